#pragma once
// The skeleton every scheduled quantization algorithm shares (INQ, ANA): it owns the schedule
// driver and the run timeline, and leaves what happens to the weights to the algorithm.
//
//   attach    exclude list -> the scheduled layers (forward order) -> algorithm's setup_units()
//             -> pretrain_epochs < train.epochs -> ScheduleDriver (relative depth j/(U-1); a
//             bad schedule fails here, before training) -> init_checkpoint weights
//   epoch e < pretrain_epochs: float training
//   epoch e >= pretrain_epochs: start() once (codebooks, scales), then
//             values = driver.at(e, losses, observations of every unit when the schedule is
//             learned) -> apply_values(e, values)
//   artifacts <run>/schedule.json (the record; `--schedule FILE` replays it)
//   checkpoint "record" (the driver's rows) + the algorithm's save_state()/load_state()
//
// Options every scheduled algorithm reads from its section (the rest is its own):
//   "schedule": {"family": ...}, "pretrain_epochs": 0, "init_checkpoint": "",
//   "exclude": ["first" | "last" | index | layer name]
#include <memory>
#include <string>
#include <vector>

#include "inner/schedule_driver.h"
#include "inner/trainer.h"

namespace qsched::inner {

struct ScheduledOptions {
  std::string section;  ///< config section name, for messages ("inq" -> "config: inq.exclude")
  sched::Quantity quantity = sched::Quantity::kFraction;
  json schedule;
  int64_t pretrain_epochs = 0;
  std::string init_checkpoint;
  std::vector<std::string> exclude;
};

class ScheduledAlgorithm : public Algorithm {
 public:
  /// `schedule`, when given, replaces the section's schedule spec (make_algorithm).
  explicit ScheduledAlgorithm(std::unique_ptr<sched::Schedule> schedule)
      : schedule_(std::move(schedule)) {}

  void attach(Trainer& t) final;
  void on_epoch_start(Trainer& t, int64_t epoch) final;
  void write_artifacts(Trainer& t, const std::string& out_dir) final;
  void save(torch::serialize::OutputArchive& a) const final;
  void load(torch::serialize::InputArchive& a) final;
  ScheduleDriver* schedule_driver() final { return driver_.get(); }

  /// The scheduled network layers, forward order (one schedule column each).
  const std::vector<int64_t>& scheduled_layers() const { return scheduled_; }
  /// The excluded (float) layers' names.
  const std::vector<std::string>& float_layers() const { return float_layers_; }
  ScheduleDriver& driver() { return *driver_; }

 protected:
  virtual const ScheduledOptions& scheduled_options() const = 0;
  /// Sets up the algorithm's state for the scheduled `layers` (network indices, forward order).
  virtual void setup_units(Trainer& t, const std::vector<int64_t>& layers) = 0;
  /// Whether start() has run (restored by load_state on resume).
  virtual bool started() const = 0;
  /// At the first scheduled epoch: fix codebooks / scales from the current weights.
  virtual void start(Trainer& t) = 0;
  /// The observation of scheduled unit j for learned schedules (inner/observations.h).
  virtual json observe_unit(Trainer& t, size_t j) = 0;
  /// Applies the schedule's values of run epoch `epoch` (one per scheduled layer).
  virtual void apply_values(Trainer& t, int64_t epoch, const std::vector<double>& values) = 0;
  virtual void save_state(torch::serialize::OutputArchive& a) const = 0;
  virtual void load_state(torch::serialize::InputArchive& a) = 0;

 private:
  std::unique_ptr<sched::Schedule> schedule_;  ///< replaces the section's spec when set
  std::unique_ptr<ScheduleDriver> driver_;
  std::vector<int64_t> scheduled_;
  std::vector<std::string> float_layers_;
};

/// Network layer indices named by an exclude list ("first", "last", an index, a layer name);
/// errors name "config: <section>.exclude".
std::vector<bool> excluded_layers(const NetworkImpl& net, const std::vector<std::string>& exclude,
                                  const std::string& section);

}  // namespace qsched::inner
