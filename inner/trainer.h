#pragma once
// The inner training loop: epochs [t0, t1) of one run, stoppable and resumable at any step.
//
//   Trainer t(cfg, splits, algorithm);      // builds the network (seeded) and the optimizer
//   t.run(t1, callbacks)                    // trains until epoch t1, interruption or divergence
//       per epoch e:  lr = lr_at_epoch(e); algorithm->on_epoch_start(e)
//                     for each batch (order = f(seed, e)):
//                         forward, loss, backward, algorithm->before_step(), optimizer step,
//                         algorithm->after_step()
//                     algorithm->on_epoch_end(e); validation on the held-out split
//   t.save_checkpoint(path) / load_checkpoint(path): model, optimizer, algorithm state, epoch,
//   position inside the epoch and metric history, written atomically.
//
// An Algorithm plugs quantization in (float training = the default no-op algorithm); the
// trainer never knows what quantizer or schedule is behind it.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "inner/base/stop.h"
#include "inner/config.h"
#include "inner/network.h"

namespace qsched::inner {

/// Loss and accuracy on a dataset (mean cross-entropy, fraction correct).
struct EvalResult {
  double loss = 0.0;
  double acc = 0.0;
  int64_t n = 0;
};
/// Evaluates in eval mode without gradients, in batches; restores the previous train/eval mode.
EvalResult evaluate(NetworkImpl& net, const data::Dataset& d, int64_t batch_size);

class Trainer;
class ScheduleDriver;
class DifferentiableRun;

/// Loads only the model weights of a checkpoint.pt written by Trainer::save_checkpoint (e.g. a
/// float run that INQ/ANA start from). `what` names the config key in errors
/// ("config: inq.init_checkpoint"); a missing file or another architecture is a ValueError.
void load_model_weights(NetworkImpl& net, const std::string& path, const std::string& what);

/// Quantization algorithm plugged into the trainer (INQ, ANA, ...). Defaults are no-ops,
/// which is float training.
class Algorithm {
 public:
  virtual ~Algorithm() = default;
  virtual std::string name() const { return "float"; }
  /// Called once, when the network and optimizer exist: parse/validate the algorithm's config
  /// section against the network (bad input fails here, before any training).
  virtual void attach(Trainer& t) {}
  /// Start of epoch `epoch` of `total` (e.g. ask the schedule for per-layer values).
  virtual void on_epoch_start(Trainer& t, int64_t epoch) {}
  /// Between backward and the optimizer step (e.g. mask gradients).
  virtual void before_step(Trainer& t) {}
  /// After each optimizer step (e.g. restore frozen weights).
  virtual void after_step(Trainer& t) {}
  /// Before validation/test evaluation and after it (e.g. switch to the hard quantizer).
  virtual void before_eval(Trainer& t) {}
  virtual void after_eval(Trainer& t) {}
  /// After the last epoch: harden the network; adds algorithm fields to the summary.
  virtual void finish(Trainer& t, json& summary) {}
  /// Extra per-epoch metrics (merged into metrics.jsonl rows).
  virtual json epoch_extra(Trainer& t) { return json::object(); }
  /// Writes algorithm files into the run directory (e.g. schedule.json); called after every
  /// epoch and at the end. Must write atomically.
  virtual void write_artifacts(Trainer& t, const std::string& out_dir) {}
  /// Checkpoint state. load() runs after attach() when a run resumes.
  virtual void save(torch::serialize::OutputArchive& a) const {}
  virtual void load(torch::serialize::InputArchive& a) {}
  /// The driver of its schedule (inner/schedule_driver.h) once attached; nullptr for an
  /// algorithm without a schedule. What learned schedules and meta-estimators ask instead of
  /// the algorithm's name.
  virtual ScheduleDriver* schedule_driver() { return nullptr; }
  /// The run as a differentiable function of its schedule values (inner/differentiable.h),
  /// for meta-gradients; nullptr (the default) when the algorithm is not differentiable in
  /// them. Errors (e.g. an unsupported network) are c10::ValueError.
  virtual std::unique_ptr<DifferentiableRun> differentiable(Trainer& t);
};

/// Per-epoch record, one line of metrics.jsonl.
struct EpochMetrics {
  int64_t epoch = 0;  ///< 1-based: the number of finished epochs
  double lr = 0, train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, seconds = 0;
  json extra = json::object();
  json to_json() const;
};

/// Observers of the loop (progress, logging, checkpoints live outside the algorithm).
struct TrainerCallbacks {
  virtual ~TrainerCallbacks() = default;
  /// After each optimizer step: step index within the epoch (1-based) and steps per epoch.
  virtual void on_step(Trainer& t, int64_t epoch, int64_t step, int64_t steps) {}
  virtual void on_epoch_end(Trainer& t, const EpochMetrics& m) {}
};

enum class Termination { kCompleted, kInterrupted, kDiverged };
std::string to_string(Termination t);

/// Several trainers may run concurrently in threads of one process (one intra-op thread
/// each): construction is serialized, and no trainer draws from torch's global generator
/// after it, so results do not depend on the interleaving.
class Trainer {
 public:
  /// Seeds torch's global generator with cfg.seed, builds the network and the optimizer.
  Trainer(RunConfig cfg, data::Splits data, std::unique_ptr<Algorithm> alg = nullptr);
  Trainer(const Trainer&) = delete;  // the batcher points into data_: not movable
  Trainer& operator=(const Trainer&) = delete;

  /// Trains from the current position up to epoch `until` (<= cfg.train.epochs). Polls `stop`
  /// after every step; once it reports a stop, returns kInterrupted at a step boundary (state
  /// consistent, ready for save_checkpoint). The default stops on Ctrl-C/SIGTERM.
  Termination run(int64_t until, TrainerCallbacks* cb = nullptr,
                  const StopToken& stop = interrupt_token());

  /// Evaluation of the current network under the algorithm's evaluation mode.
  EvalResult eval_on(const data::Dataset& d);

  /// Summary of the run so far: test/val loss and accuracy (after Algorithm::finish when
  /// the run is complete), epochs, seconds, algorithm, quantized, parameters.
  json summary(Termination term);

  void save_checkpoint(const std::string& path) const;
  /// Restores a checkpoint written by save_checkpoint for the same config; a checkpoint of a
  /// different config or a corrupt file is a c10::ValueError.
  void load_checkpoint(const std::string& path);

  /// Resets the optimizer state (momentum buffers, Adam moments); used by INQ.
  void reset_optimizer();

  const RunConfig& config() const { return cfg_; }
  Network& network() { return net_; }
  torch::optim::Optimizer& optimizer() { return *opt_; }
  Algorithm& algorithm() { return *alg_; }
  const data::Splits& data() const { return data_; }
  int64_t epoch() const { return epoch_; }
  const std::vector<json>& history() const { return history_; }
  double seconds() const { return seconds_; }
  /// Overrides the LR multiplier (e.g. INQ resetting the LR schedule: lr_at_epoch is then
  /// evaluated relative to `lr_epoch_offset`).
  void set_lr_epoch_offset(int64_t e) { lr_epoch_offset_ = e; }
  int64_t lr_epoch_offset() const { return lr_epoch_offset_; }

 private:
  void make_optimizer();
  void set_lr(double lr);

  RunConfig cfg_;
  data::Splits data_;
  std::unique_ptr<Algorithm> alg_;
  torch::Device device_;
  Network net_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::unique_ptr<data::Batcher> batcher_;

  // Position and partial-epoch accumulators (all checkpointed).
  int64_t epoch_ = 0;          ///< epochs finished
  int64_t step_in_epoch_ = 0;  ///< steps finished inside epoch_ (0 at epoch boundaries)
  double loss_sum_ = 0.0;      ///< sum of per-sample training loss in the current epoch
  int64_t correct_ = 0, seen_ = 0;
  double epoch_seconds_ = 0.0;  ///< time spent in the current epoch so far
  int64_t lr_epoch_offset_ = 0;
  double seconds_ = 0.0;       ///< total training time (across resumes)
  std::vector<json> history_;  ///< metrics rows of finished epochs
};

}  // namespace qsched::inner
