#pragma once
// Schedules: for every epoch and every quantizable layer, one number.
//
//   INQ  (Quantity::kFraction): the fraction of the layer's weights that is quantized and
//        frozen; in [0,1], non-decreasing in t, 1 at the last epoch.
//   ANA  (Quantity::kNoise):    the noise level sigma of the layer's quantizers; >= 0,
//        non-increasing in t, 0 at the last epoch (then the network is the hard QNN).
//
//   trainer --ScheduleContext{epoch t, T, L, observations}--> Schedule::values() -> [L values]
//
// inner/ asks a Schedule for values and never knows whether it is hand-coded, a replayed
// table or a learned controller (meta/ adapts the controller into a Schedule). The invariants
// are enforced in one place, check_values()/check_table(), for every kind of schedule.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qsched::sched {

using json = nlohmann::json;

enum class Quantity { kFraction, kNoise };
std::string to_string(Quantity q);
/// "fraction" | "noise"; anything else is a c10::ValueError.
Quantity quantity_from_string(const std::string& s);

/// What a schedule may look at when it is asked for epoch t. Static (hand-coded) schedules
/// use only epoch/total_epochs/num_layers; a learned controller also reads the observations.
struct ScheduleContext {
  int64_t epoch = 0;                        ///< 0-based epoch about to start
  int64_t total_epochs = 1;                 ///< T: epochs of the quantization phase
  int64_t num_layers = 1;                   ///< L: quantizable layers being scheduled
  std::vector<double> rel_depth;            ///< per layer, index/(L-1)
  std::vector<double> previous;             ///< per layer, values used at epoch t-1 (empty at t=0)
  double train_loss = 0.0, val_loss = 0.0;  ///< of the last finished epoch (0 at t=0)
  json observations = json::object();       ///< per-layer statistics for learned schedules
};

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual Quantity quantity() const = 0;
  /// One value per layer for ctx.epoch. Must satisfy the invariants (checked by callers with
  /// check_values).
  virtual std::vector<double> values(const ScheduleContext& ctx) = 0;
  /// True when values() depends only on (epoch, total_epochs, num_layers): then the whole
  /// table can be materialized and validated before training starts.
  virtual bool is_static() const { return true; }
  /// The spec (family and every parameter) that make_schedule turns back into a schedule
  /// with the identical table (tested for every registered family).
  virtual json describe() const = 0;
};

/// A layer x epoch table of values: values[t][l].
struct ScheduleTable {
  Quantity quantity = Quantity::kFraction;
  std::vector<std::vector<double>> values;

  int64_t epochs() const { return static_cast<int64_t>(values.size()); }
  int64_t layers() const { return values.empty() ? 0 : static_cast<int64_t>(values[0].size()); }
  /// {"quantity": "fraction", "epochs": T, "layers": L, "values": [[...L...] x T]}
  json to_json() const;
  /// Parses and validates (check_table) a table document; `what` names it in errors.
  static ScheduleTable from_json(const json& j, const std::string& what);
};

/// Checks one epoch's values against the invariants given the previous epoch's values
/// (`prev` empty at t = 0) and whether this is the last epoch. Throws c10::ValueError:
/// "<what>: epoch 3, layer 1: fraction 0.4 < 0.5 at epoch 2. Violated constraint: fractions
/// are non-decreasing".
void check_values(Quantity q, const std::vector<double>& v, const std::vector<double>& prev,
                  bool last_epoch, int64_t epoch, const std::string& what);
/// check_values for every epoch of a table (and a rectangular shape, T >= 1, L >= 1).
void check_table(const ScheduleTable& t, const std::string& what);

/// Evaluates a static schedule at every epoch and validates the result.
ScheduleTable materialize(Schedule& s, int64_t epochs, int64_t layers, const std::string& what);

/// Replays a table exactly (a recorded schedule.json, or an explicit per-layer table).
class TableSchedule : public Schedule {
 public:
  explicit TableSchedule(ScheduleTable t) : table_(std::move(t)) {}
  Quantity quantity() const override { return table_.quantity; }
  std::vector<double> values(const ScheduleContext& ctx) override;
  json describe() const override;

 private:
  ScheduleTable table_;
};

/// INQ accumulated portions (Zhou et al. 2017, Sec. 3): portion sigma_k for the k-th step,
/// each step lasting `epochs_per_step` epochs: f(t) = portions[min(t / epochs_per_step, K-1)],
/// the same for every layer. The last epoch must fall in the final step (portion 1).
class StepListSchedule : public Schedule {
 public:
  StepListSchedule(std::vector<double> portions, int64_t epochs_per_step);
  Quantity quantity() const override { return Quantity::kFraction; }
  std::vector<double> values(const ScheduleContext& ctx) override;
  json describe() const override;
  /// Epochs needed so that the last epoch is the first epoch of the final step.
  int64_t min_epochs() const;

 private:
  std::vector<double> portions_;
  int64_t epochs_per_step_;
};

/// The accumulated portions of the INQ paper for `bits` (5: {0.5,0.75,0.875,1};
/// 4: {0.3,0.5,0.8,0.9,0.95,1}; 3: {0.2,0.4,0.6,0.8,0.9,0.95,1};
/// 2: {0.2,0.4,0.6,0.7,0.8,0.85,0.9,0.95,0.975,1}). Other bit-widths use the 5-bit list.
std::vector<double> inq_paper_portions(int bits);

}  // namespace qsched::sched
