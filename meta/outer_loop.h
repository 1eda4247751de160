#pragma once
// The outer (meta-training) loop: antithetic ES on the controller, resumable.
//
//   MetaTrainer mt(cfg, out_dir, collective);
//   mt.start(resume)                 fresh: theta0 (seeded init, zero head), Adam state 0
//                                    resume: out_dir/meta_state.pt (same config required)
//   mt.run(until, callbacks)         outer steps k = step() .. until-1:
//     pairs i < P: task_i = sample_task(k, i); eps_i from (seed, k, i)
//     members: base runs of tasks not yet cached, then theta + sigma eps_i, theta - sigma eps_i
//       (evaluated in parallel: meta/es.h evaluate_members, handed out to threads and ranks
//        dynamically, longest inner run first)
//     fitness = val_loss / base_val_loss (meta/task.h); +inf for diverged runs (logged)
//     g = ES gradient (centered ranks); theta <- Adam(theta, g + wd theta)
//     every validate_every steps: current theta on the held-out validation tasks
//     every checkpoint_every steps: meta_state.pt, controller.{pt,json}, meta_metrics.jsonl
//
// Files in out_dir (written by rank 0 only, atomically):
//   .qsched-run          ownership marker, kind "meta-train" (inner/run_dir.h)
//   meta_config.json     the resolved meta config
//   meta_metrics.jsonl   one row per outer step: step, mean_fitness, best_fitness,
//                        improvement (1 - mean_fitness), diverged, grad_norm, theta_norm, sigma,
//                        seconds, busy_seconds (inside inner runs, all workers), utilization
//                        (busy / (seconds of the evaluations x workers): 1 = no core idled
//                        at a step's barrier), tasks; and on validation steps val_fitness,
//                        val_improvement, val_acc, val_base_acc (means over the validation tasks)
//   meta_state.pt        full meta-state: config, step, theta, Adam moments and step count,
//                        base-result cache, metric rows. Every random number of a step derives
//                        from (seed, step, index), so (theta, Adam, step) is the whole state:
//                        N steps straight and k steps + resume N - k steps are bit-identical.
//   controller.pt/.json  the current controller (meta/controller_io.h)
//
// PES ("estimator": {"name": "pes", "segment_epochs": K}; Vicol, Metz & Sohl-Dickstein, ICML
// 2021, "Unbiased Gradient Estimation in Unrolled Computation Graphs with Persistent Evolution
// Strategies"): pair i is a persistent particle: one inner run of task_i per sign, kept alive
// (Trainer and controller hidden state) across outer steps, K epochs per step.
//   step k: eps = perturbation(seed, k, i); A_i += eps (accumulator since the run began)
//           theta +- sigma eps drive the next K epochs of the + and - run
//           F+-  = min(loss+- / base_val_loss, 10): loss = validation loss at the segment end
//                  (the hardened network's at the last segment); diverged -> 10
//           g    = 1 / (2 P sigma) sum_i A_i (F+_i - F-_i)    (raw differences, no ranks:
//                  the accumulated score is what makes PES unbiased for the whole run)
//   a run that ends (or diverges) frees its particle: next step samples a new task, A_i = 0.
// The meta-state checkpoint then also holds every particle (task, A_i, epoch, controller hidden
// states) and the inner trainers' checkpoints (files pes_<step>_<i>_<sign>.pt).
//
// Meta-gradient ("estimator": {"name": "metagrad", "pairs": P, "unroll": K}; ANA only): per
// outer step, for each of P sampled tasks i (sample_task(k, i)):
//   e_i  = a quantization epoch in [0, T - 2] drawn from (seed, k, i)  (the last epoch's sigma is
//          0 by construction and has no gradient)
//   the inner run of theta (a ControllerSchedule) trains to the start of e_i; the schedule is
//   asked for e_i as the trainer would (features, observations, hidden state), and the same
//   per-unit sigma is recomputed with an autograd graph through theta (segment_metagrad below)
//   J_i, dJ_i/dsigma = metagrad(trainer, sigma, K) (meta/metagrad.h: K unrolled SGD steps,
//          surrogate validation loss at MetaGradOptions::eval_sigma)
//   g_i  = dJ_i/dtheta = sigma.backward(dJ_i/dsigma)      (truncated: the trajectory before e_i
//          is held fixed)
//   g = mean_i g_i; theta <- Adam(theta, g + wd theta)   (the same FlatAdam as ES)
// Tasks run in parallel like ES members (evaluate_members: threads and ranks, all rows
// allgathered), so every rank applies the same update; the meta-state is (theta, Adam, step) as
// for ES. A diverged inner run contributes a zero gradient (counted in "diverged").
//
// Interruption (qsched::interrupted()): the step in progress is abandoned (its inner runs stop at
// a step boundary), run() returns false; the caller saves the checkpoint of the last finished
// step and exits 130; --resume recomputes the abandoned step exactly.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "inner/trainer.h"
#include "meta/collective.h"
#include "meta/controller.h"
#include "meta/es.h"
#include "meta/metagrad.h"
#include "meta/task.h"

namespace qsched::meta {

struct MetaCallbacks {
  virtual ~MetaCallbacks() = default;
  virtual void on_step(const json& row) {}
};

/// One task segment of the metagrad estimator.
struct SegmentMetaGrad {
  double meta_loss = 0, hard_loss = 0, hard_acc = 0;  ///< metagrad's J and hard metrics
  torch::Tensor sigma;  ///< the controller's per-unit sigma of the segment, detached double [U]
  torch::Tensor grad;   ///< dJ/dtheta, flat in flat_parameters() order, the parameters' dtype
};

/// `t` stands at the start of quantization epoch e (t.epoch(); not yet started) of an ANA run
/// scheduled by `schedule`, which is driven by `ctrl`. Asks the schedule for epoch e through the
/// algorithm (if not yet recorded), recomputes those values with a graph through ctrl's current
/// parameters (ControllerSchedule::last_values_with_grad), unrolls K steps (metagrad) and
/// backpropagates into ctrl's parameters (their .grad is overwritten). The trainer state at e is
/// a constant of J. c10::ValueError for a non-ANA trainer or a past-the-end epoch.
SegmentMetaGrad segment_metagrad(inner::Trainer& t, ControllerSchedule& schedule, Controller& ctrl,
                                 int64_t K, const MetaGradOptions& options = {});

class MetaTrainer {
 public:
  MetaTrainer(MetaConfig cfg, std::string out_dir, Collective& coll);

  /// Fresh start (writes meta_config.json) or resume from out_dir/meta_state.pt. Rank 0 first
  /// claims out_dir as a "meta-train" directory (inner/run_dir.h; `force` writes into a
  /// directory that is not one).
  void start(bool resume, bool force = false);
  /// Outer steps until `until` (exclusive) or interruption; true when `until` was reached.
  bool run(int64_t until, MetaCallbacks* cb = nullptr);
  /// One outer step; returns its metrics row, or a null json when interrupted.
  json step();
  /// Current theta on the validation tasks: {val_fitness, val_improvement, val_acc,
  /// val_base_acc, val_tasks}; null json when interrupted.
  json validate();

  void save_checkpoint() const;
  void load_checkpoint();

  /// The meta-state as plain data, for ranks >= 1 of a resumed run (rank 0 alone reads the
  /// checkpoint): JSON text with step, the Adam step count, base-result cache, metric rows and
  /// the trajectory config, and theta and the Adam moments as hex of their raw bytes (bit-exact,
  /// NaN included). No archive and no file: ranks >= 1 never run torch's loader on bytes from
  /// the network. ES and metagrad only (PES is one process).
  std::string export_state() const;
  /// Replaces this trainer's state by export_state()'s text from a trainer of the same config.
  /// Every field is checked (config, tensor sizes, history length); anything else throws
  /// c10::ValueError "meta state from rank 0 ...: <what>" and leaves the trainer unchanged.
  void import_state(const std::string& text);
  /// controller.{pt,json} of the current theta into `dir` (default out_dir).
  void save_controller(const std::string& dir = "") const;

  int64_t steps_done() const { return step_; }
  const torch::Tensor& theta() const { return theta_; }
  const MetaConfig& config() const { return cfg_; }
  const std::vector<json>& history() const { return history_; }
  /// Base-schedule result {val_loss, val_acc} per task key.
  const std::map<std::string, std::pair<double, double>>& base_cache() const { return base_; }

 private:
  /// Runs base schedules (uncached tasks) and controller members (theta[j] on tasks[j]; none
  /// when `thetas` is empty); fills base_ and returns one InnerResult per controller member.
  std::vector<InnerResult> evaluate(const std::vector<Task>& tasks,
                                    const std::vector<torch::Tensor>& thetas, bool* interrupted);
  void write_metrics() const;
  json es_step(std::vector<Task>& tasks, std::vector<torch::Tensor>& thetas);
  json pes_step();
  json metagrad_step();

  /// Relative cost of one inner run of `t` (samples x network parameters): the longest run
  /// first. Call from the coordinating thread.
  double task_cost(const Task& t);

  /// A PES particle (one antithetic pair of persistent inner runs).
  struct Particle {
    bool active = false;
    Task task;
    torch::Tensor acc;  ///< sum of the unit perturbations since the run began
    int64_t epoch = 0;  ///< inner epochs done
    Controller ctrl[2] = {Controller(nullptr), Controller(nullptr)};
    std::unique_ptr<inner::Trainer> trainer[2];
    ControllerSchedule* schedule[2] = {nullptr, nullptr};  ///< owned by trainer[s]
    std::string resume_file[2];                            ///< checkpoint to load on first use
    torch::Tensor resume_hidden[2];
  };

  MetaConfig cfg_;
  std::string out_;
  Collective& coll_;
  Controller controller_{nullptr};  ///< shape/options template
  torch::Tensor theta_;
  std::unique_ptr<FlatAdam> adam_;
  int64_t step_ = 0;
  std::map<std::string, std::pair<double, double>> base_;
  std::vector<json> history_;
  DataCache data_;
  std::map<std::string, double> net_params_;  ///< network spec -> parameter count (cost model)
  std::vector<Particle> particles_;
  EvalTiming timing_;       ///< of the step in progress (metrics: busy_seconds, utilization)
  bool consistent_ = true;  ///< false after an abandoned PES step: never checkpoint that state
};

}  // namespace qsched::meta
