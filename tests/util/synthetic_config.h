#pragma once
// Fixtures of trainer, algorithm and CLI tests: a small, fast, learnable run config on
// synthetic data (8x8 images, 4 classes) and helpers around it.
#include <memory>
#include <vector>

#include "inner/base/json_reader.h"
#include "inner/trainer.h"

namespace qsched::test {

json synthetic_config(int64_t epochs = 3);

/// A meta-training config (meta/task.h) on synthetic_config() tasks: ANA, 2 antithetic pairs,
/// 2 outer steps, a 4-unit controller; seconds per step on one core.
json tiny_meta_config();

/// Parses `j`, sets threads, loads the data on the CPU and builds the trainer with the
/// config's algorithm (inner::make_algorithm).
std::unique_ptr<inner::Trainer> make_trainer(const json& j);

/// Requests a stop after step `at` of epoch `epoch` (0-based epoch, 1-based step), as a Ctrl-C
/// there would: pass `&cb` and `cb.token()` to Trainer::run.
struct StopAt : inner::TrainerCallbacks {
  int64_t epoch, at;
  StopSource source;
  StopAt(int64_t e, int64_t s) : epoch(e), at(s) {}
  StopToken token() const { return source.token(); }
  void on_step(inner::Trainer&, int64_t e, int64_t s, int64_t) override {
    if (e == epoch && s == at) source.request_stop();
  }
};

/// Metrics rows without wall-clock fields, for exact comparisons of runs.
std::vector<json> strip_time(const std::vector<json>& rows);

}  // namespace qsched::test
