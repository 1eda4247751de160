#pragma once
// Antithetic evolution strategies on the controller's flat parameters theta (Salimans et al.
// 2017, "Evolution Strategies as a Scalable Alternative to Reinforcement Learning"; fitness
// shaping by centered ranks as in openai/evolution-strategies-starter).
//
//   pair i of step k:  eps_i = N(0, I) from the generator derive_seed(seed, step k, pair i)
//                      members theta + sigma eps_i  and  theta - sigma eps_i  (same task, same
//                      initialization and data order: common random numbers)
//   fitness F (lower is better; +inf = diverged) -> centered ranks r in [-0.5, 0.5] over all 2P
//   members (rank 0 = best; ties share the mean rank; every +inf ranks worst)
//   g = 1 / (2 P sigma) * sum_i (r_i+ - r_i-) eps_i            estimate of dE[F]/dtheta
//   theta <- Adam(theta, g + weight_decay * theta)             (minimizes F)
//
// Perturbations are regenerated from integers, never stored or sent. Members are evaluated in
// parallel threads (one intra-op thread each) on this rank and spread over the ranks of a
// Collective (handed out one at a time to whichever thread of any rank is free, see
// evaluate_members); every rank gets all fitness values and applies the
// same update, so theta stays bit-identical everywhere.
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "meta/collective.h"

namespace qsched::meta {

/// eps for (seed, step, pair): float32 [n], N(0, 1).
torch::Tensor perturbation(uint64_t seed, int64_t step, int64_t pair, int64_t n);

/// Centered ranks of `fitness` (lower = better): values in [-0.5, 0.5] (0 for a single value);
/// equal values share their mean rank; NaN is treated as +inf.
std::vector<double> centered_ranks(const std::vector<double>& fitness);

/// g = 1/(2 P sigma) sum_i (r_i+ - r_i-) eps_i with r = centered_ranks(plus ++ minus).
torch::Tensor es_gradient(const std::vector<double>& plus, const std::vector<double>& minus,
                          uint64_t seed, int64_t step, int64_t n, double sigma);

/// Adam (Kingma & Ba 2015, Algorithm 1) on a flat float32 vector, with L2 weight decay added to
/// the gradient (as OpenAI ES's l2coeff). State is checkpointable.
struct AdamOptions {
  TORCH_ARG(double, lr) = 0.02;  ///< step size (OpenAI ES: 0.01)
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.005;  ///< OpenAI ES: 0.005
};

class FlatAdam {
 public:
  FlatAdam(AdamOptions opt, int64_t n);
  /// theta <- theta - lr * mhat / (sqrt(vhat) + eps), g' = g + weight_decay * theta.
  void step(torch::Tensor& theta, const torch::Tensor& grad);
  torch::Tensor m, v;  ///< moments, float32 [n]
  int64_t t = 0;       ///< steps taken
  AdamOptions opt;
};

/// Seconds of evaluate_members calls, summed over calls: `busy` inside `eval`, over all members
/// of all ranks; `slots` = wall seconds of the call on this rank (until every rank's rows have
/// arrived) x workers (threads of all ranks). busy / slots is the parallel utilization: 1 means
/// no worker ever waited for the last member of a call.
struct EvalTiming {
  double busy_seconds = 0, slot_seconds = 0;
  double utilization() const { return slot_seconds > 0 ? busy_seconds / slot_seconds : NAN; }
};

/// Evaluates `count` members: member m runs `eval(m)` (a vector of `width` values) on one rank,
/// in up to `threads` threads of that rank (each sets one intra-op thread); results are
/// allgathered so every rank returns all `count` rows. An exception in any member is rethrown
/// (after all threads of this rank end). `eval` must be deterministic and must not depend on
/// which thread or rank runs it.
///
/// Members are handed out dynamically (Collective::claim) in run_order(count, cost): a thread
/// of any rank that finishes takes the next member, so no core waits while work is left, and
/// the longest run first (a few long inner runs last in the queue left one core idle for up
/// to a third of a step). `cost` (optional, one estimate per member) must be identical on
/// every rank. `timing` (optional) accumulates the seconds above.
std::vector<std::vector<double>> evaluate_members(
    int64_t count, int64_t width, int threads, Collective& coll,
    const std::function<std::vector<double>(int64_t)>& eval, const std::vector<double>& cost = {},
    EvalTiming* timing = nullptr);

/// The order in which members are handed out: by decreasing `cost`, ties in index order
/// (empty `cost`: index order). Deterministic.
std::vector<int64_t> run_order(int64_t count, const std::vector<double>& cost);

}  // namespace qsched::meta
