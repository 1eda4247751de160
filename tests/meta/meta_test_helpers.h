#pragma once
// Helpers shared by the outer-loop tests: an interrupted run ("Ctrl-C" after step k, checkpoint)
// and history comparison without wall times.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "inner/runtime.h"
#include "meta/outer_loop.h"

namespace qsched::meta {

/// Interrupts the loop (as SIGINT would) once step `k` is done.
struct StopAfter : MetaCallbacks {
  explicit StopAfter(int64_t k) : k(k) {}
  void on_step(const json& row) override {
    if (row["step"].get<int64_t>() == k) set_interrupted(true);
  }
  int64_t k;
};

/// Starts a fresh meta-training of `config` in `dir` for `steps` steps, interrupts it after step
/// `stop_after` and saves its checkpoint, as Ctrl-C would; the caller resumes from `dir`.
inline void run_until_interrupted(const json& config, const std::string& dir, Collective& coll,
                                  int64_t stop_after, int64_t steps) {
  MetaTrainer first(MetaConfig::from_json(config), dir, coll);
  first.start(false);
  StopAfter stop(stop_after);
  EXPECT_FALSE(first.run(steps, &stop));
  set_interrupted(false);
  EXPECT_EQ(first.steps_done(), stop_after);
  first.save_checkpoint();
}

}  // namespace qsched::meta
