#pragma once
// The trainer-side half of a schedule: asks the Schedule for per-layer values at the start of
// every quantization epoch, enforces the invariants, and records what was actually used.
//
//   epochs [0, start) : no quantization (float pre-training inside the same run)
//   epochs [start, start + T): ScheduleDriver::at(e) -> values of quantization epoch e - start
//
// The record is <run>/schedule.json (ScheduleTable JSON: epochs x layers), which
// {"family": "file", "path": ...} (or `qsched train --schedule FILE`) replays exactly.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::inner {

using json = nlohmann::json;

class ScheduleDriver {
 public:
  /// `start`: first quantization epoch of the run; `epochs`: T; `layers`: L. Static schedules
  /// are materialized and validated here, so a bad schedule fails before training.
  ScheduleDriver(std::unique_ptr<sched::Schedule> s, int64_t start, int64_t epochs, int64_t layers,
                 std::vector<double> rel_depth, std::string what);

  /// Values for run epoch `epoch` (>= start); records them. Asking again for an already
  /// recorded epoch (after a resume) returns the recorded values. `observations` goes to
  /// ScheduleContext::observations (inner/observations.h; empty for static schedules).
  std::vector<double> at(int64_t epoch, double train_loss, double val_loss,
                         json observations = json::object());
  /// Values recorded for run epoch `epoch`, if any.
  bool recorded(int64_t epoch) const {
    return epoch - start_ < static_cast<int64_t>(record_.size());
  }
  /// Last values used (empty before the first quantization epoch).
  const std::vector<double>& last() const;

  int64_t start() const { return start_; }
  int64_t epochs() const { return epochs_; }
  int64_t layers() const { return layers_; }
  sched::Quantity quantity() const { return schedule_->quantity(); }
  sched::Schedule& schedule() { return *schedule_; }

  /// The record as a table (rows so far).
  sched::ScheduleTable table() const;
  /// For checkpoints: the recorded rows as JSON text, and back.
  std::string record_json() const;
  void restore_record(const std::string& text);

 private:
  std::unique_ptr<sched::Schedule> schedule_;
  int64_t start_, epochs_, layers_;
  std::vector<double> rel_depth_;
  std::string what_;
  std::vector<std::vector<double>> record_;
};

}  // namespace qsched::inner
