#pragma once
// Meta-training configuration, task families and the fitness of one inner run.
//
// Meta config (JSON, strict keys; every error names "meta config: <key>" and the rule):
// {
//   "seed": 0,                 // every generator of the outer loop derives from it
//   "threads": 2,              // population members evaluated in parallel on this rank
//   "steps": 20,               // outer steps (qsched meta-train --steps overrides)
//   "validate_every": 5,       // meta-validation every N steps (and after the last); 0 = never
//   "checkpoint_every": 1,     // full meta-state checkpoint every N steps (and at the end)
//   "run": {...},              // the inner run template: a complete run config (inner/config.h)
//                              // with "algorithm": "inq" or "ana"; its schedule is the BASE
//                              // schedule the controller is a residual around
//   "tasks":      {"networks": [net spec, ...], "subsets": [n, ...], "seeds": K},
//   "validation": {"networks": [net spec, ...], "subsets": [n, ...], "seeds": K},
//                              // task pool = networks x subsets x K seeds; training seeds and
//                              // validation seeds come from disjoint derivations, so
//                              // validation tasks are held out even for the same networks
//   "controller": {"hidden": 16},
//   "estimator": {"name": "es", "pairs": 4, "sigma": 0.05, "segment_epochs": 2},
//                              // "es" (antithetic ES on whole inner runs, meta/es.h)
//                              // | "pes" (persistent ES on truncated runs of segment_epochs
//                              //   epochs per outer step, meta/outer_loop.h)
//                              // | "metagrad" (ANA only: truncated meta-gradient through
//                              //   "unroll" inner SGD steps, meta/outer_loop.h, meta/metagrad.h)
//   "optimizer": {"lr": 0.02, "weight_decay": 0.005, "beta1": 0.9, "beta2": 0.999}
// }
//
// A Task = (network spec, subset size, seed) applied to the run template: same algorithm, bits,
// epoch budget and base schedule. Fitness of a run = validation loss of the HARDENED network
// (Algorithm::finish, then the fixed validation split data.val_size of the task's seed) divided
// by the base schedule's validation loss on the same task and seed (1 = as good as the base,
// < 1 better). A diverged or non-finite run has fitness +inf (ranked worst).
#include <torch/torch.h>

#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "inner/config.h"
#include "inner/network.h"
#include "meta/controller.h"
#include "meta/es.h"

namespace qsched::meta {

struct Task {
  json network;
  int64_t subset = 0;
  uint64_t seed = 0;
  /// Stable identity for caches: network JSON, subset and seed.
  std::string key() const;
  json to_json() const { return {{"network", network}, {"subset", subset}, {"seed", seed}}; }
};

struct TaskFamily {
  std::vector<json> networks;
  std::vector<int64_t> subsets;
  int64_t seeds = 1;
};

struct EstimatorOptions {
  std::string name = "es";
  int64_t pairs = 4;           ///< antithetic pairs per outer step (population 2 * pairs)
  double sigma = 0.05;         ///< perturbation scale on theta
  int64_t segment_epochs = 2;  ///< pes: inner epochs per outer step (truncation length)
  int64_t unroll = 20;         ///< metagrad: unrolled inner SGD steps K per task
};

struct MetaConfig {
  uint64_t seed = 0;
  int threads = 1;
  int64_t steps = 20;
  int64_t validate_every = 5;
  int64_t checkpoint_every = 1;
  json run;  ///< the validated, fully resolved inner run template
  TaskFamily tasks, validation;
  ControllerOptions controller;
  EstimatorOptions estimator;
  AdamOptions optimizer;

  std::string algorithm() const { return run.at("algorithm").get<std::string>(); }
  sched::Quantity quantity() const;
  /// The base schedule spec (run.<algorithm>.schedule, resolved).
  json base_schedule() const;

  json to_json() const;
  /// Parses and validates (also every task's run config and the base schedule).
  static MetaConfig from_json(const json& j);
};

/// The pool of a family: networks x subsets x seeds (seeds derived from (meta seed, salt, k)).
std::vector<Task> task_pool(const MetaConfig& cfg, bool validation);
/// Training task of pair `pair` at outer step `step` (uniform over the pool, seeded).
Task sample_task(const MetaConfig& cfg, const std::vector<Task>& pool, int64_t step, int64_t pair);
/// The run config of a task (template with network, data.subset and seed replaced, threads 1).
inner::RunConfig task_run_config(const MetaConfig& cfg, const Task& task);

/// Result of one inner run.
struct InnerResult {
  double val_loss = 0, val_acc = 0;
  bool diverged = false;
  bool interrupted = false;
};

/// Trains the task to its end with `schedule` (nullptr = the config's base schedule), hardens,
/// evaluates on the task's validation split. Safe to call from several threads at once.
InnerResult run_inner(const inner::RunConfig& cfg, const data::Splits& data,
                      std::unique_ptr<sched::Schedule> schedule);

/// Normalized fitness: val_loss / base_val_loss; +inf when diverged or non-finite.
double fitness_of(const InnerResult& r, double base_val_loss);

/// Raw data files read once and shared (read-only) by all tasks of a meta-training run, and
/// the prepared splits of recent tasks: preparing one (a seeded train/val split of the whole
/// training set, the subset, normalization) takes 0.1-0.2 s. Members fetch their split
/// themselves, in parallel: done on the coordinating thread, before the members started, this
/// was serial time (about a tenth of an early outer step) that capped the parallel speedup.
class DataCache {
 public:
  /// Prepared splits of a task (split, subset, normalization of a shared raw copy), shared
  /// read-only by every member of that task. Thread-safe: each split is prepared once (other
  /// threads asking for it wait for that), different splits are prepared in parallel.
  data::Splits get(const inner::RunConfig& cfg);
  /// What the raw data of a task is (reads the raw files on first use).
  struct RawInfo {
    inner::InputShape input;
    int64_t num_classes = 0;
    int64_t train_samples = 0;  ///< before the validation split
  };
  RawInfo raw_info(const inner::RunConfig& cfg);

  /// Bound on the bytes of prepared splits kept (the least recently used go first).
  static constexpr int64_t kMaxPreparedBytes = int64_t(1) << 30;

 private:
  /// The raw data of `cfg` (loaded if it is not the current raw data); mutex_ held.
  std::shared_ptr<const data::Splits> raw_locked(const inner::RunConfig& cfg);

  std::mutex mutex_;
  std::string raw_key_;
  std::shared_ptr<const data::Splits> raw_;
  int64_t generation_ = 0;  ///< raw data loads so far (a split of older raw data is not kept)
  std::map<std::string, std::shared_future<data::Splits>> prepared_;
  std::map<std::string, int64_t> bytes_;  ///< of the prepared splits that are ready
  std::list<std::string> lru_;            ///< most recently used first
  int64_t prepared_bytes_ = 0;
};

}  // namespace qsched::meta
