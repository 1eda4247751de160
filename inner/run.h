#pragma once
// One training run in a run directory (what `qsched train` does):
//
//   <out>/config.json      the fully resolved config (written first)
//   <out>/metrics.jsonl    one JSON object per finished epoch (rewritten atomically)
//   <out>/checkpoint.pt    model, optimizer, algorithm state, position (atomic, every epoch,
//                          and on SIGINT/SIGTERM at the current step)
//   <out>/summary.json     written when the run ends (completed or diverged)
//
// resume = true continues from <out>/checkpoint.pt with <out>/config.json; the result is
// identical to an uninterrupted run.
//
// The directory is claimed first (inner/run_dir.h): a new run needs a missing or empty
// directory or an unfinished one of its own kind without a checkpoint (else --force); resume
// needs one of its own kind. SIGINT/SIGTERM are handled from the start: a signal during
// start-up (data loading, model construction) ends the run before its first step with
// Termination::kInterrupted and no checkpoint written (a resumed run keeps its checkpoint).
#include <functional>
#include <memory>
#include <string>

#include "inner/trainer.h"

namespace qsched::inner {

struct RunOptions {
  std::string out_dir;
  bool resume = false;
  bool progress = true;  ///< progress bar on a terminal, epoch lines on stderr
  bool quiet = false;    ///< no epoch lines at all (tests, sweeps)
  /// Kind recorded in the directory's ownership marker (inner/run_dir.h): "train" for plain
  /// runs, "apply" for runs scheduled by a controller.
  std::string kind = "train";
  /// Write into a directory that is not a qsched run of this kind (files of other names are
  /// left alone).
  bool force = false;
  /// Creates the algorithm for the config (default: make_algorithm, inner/algorithms.h).
  std::function<std::unique_ptr<Algorithm>(const RunConfig&)> make_algorithm;
  /// Ends the run at the next step boundary with a checkpoint (default: Ctrl-C/SIGTERM).
  StopToken stop = interrupt_token();
};

struct RunOutcome {
  Termination termination = Termination::kCompleted;
  json summary;  ///< empty when interrupted
};

/// Runs (or resumes) a run. Bad config/data/checkpoint -> c10::ValueError.
RunOutcome run_training(const RunConfig& cfg, const RunOptions& opt);

/// Reads a run's summary.json and checks the fields other commands use (algorithm and
/// termination strings; test_acc, val_acc, seconds numbers; test_loss, val_loss numbers or null
/// (a diverged run's NaN); epochs an integer). A file that breaks this is a one-line
/// c10::ValueError naming it.
json read_summary(const std::string& path);

/// One row of a run's metrics.jsonl, as reports use it.
struct EpochPoint {
  int64_t epoch = 0;
  double val_acc = 0;
};
/// Reads a run's metrics.jsonl (one JSON object per line, each with an integer "epoch" and a
/// number "val_acc"); a missing file gives no rows, a bad line is a c10::ValueError naming the
/// file and line.
std::vector<EpochPoint> read_val_curve(const std::string& path);

/// Reads <dir>/config.json of an existing run.
RunConfig load_run_config(const std::string& dir);

}  // namespace qsched::inner
