#pragma once
// Truncated meta-gradient for ANA (issue #6, "Estimators"): the derivative of a validation loss
// after K unrolled inner SGD steps with respect to the per-unit, per-step noise levels sigma.
//
// Why ANA is differentiable in sigma. Under the expectation strategy (inner/ana/ana.h) every
// quantizer is, in units of its quantum eps,
//   E[Q(u + nu)] = q_0 + sum_i dq_i F((u - theta_i) / s),   s = native scale of sigma,
// a smooth function of u and s for s > 0. So the network's outputs, its training gradient and
// the K steps of SGD are functions of sigma that autograd can differentiate.
//
// ---------------------------------------------------------------------------------------------
// The unrolled inner loop (what metagrad() differentiates)
//
//   w_0, b_0 = the trainer's current parameters, m_0 = its SGD momentum buffers (none: the first
//   step initializes them, as torch::optim::SGD does)
//   for k = 0..K-1:       (batch B_k, lr_k = the trainer's next batches and learning rates)
//     g_k = G(w_k, sigma_k; B_k)                                   the trainer's gradient
//     d_k = g_k + wd w_k;  m_{k+1} = mu m_k + (1 - damp) d_k  (m_1 = d_0 without a buffer)
//     w_{k+1} = w_k - lr_k (nesterov ? d_k + mu m_{k+1} : m_{k+1})  (torch::optim::SGD::step)
//   J(sigma) = CE(f(w_K; sigma_eval), y_val)        the meta-objective (surrogate, see below)
//   dJ/dsigma by reverse-mode autograd through the whole unroll
//
// G is exactly the gradient the trainer computes, not the derivative of its forward pass: ANA's
// operator backpropagates the derivative of the expectation under the *backward* noise
//   dE/du = sum_i dq_i p_b(u - theta_i),  s_b = native(max(ratio * sigma, floor))
// (with the default floor 0.5, s_b != s_f whenever sigma < 0.5, i.e. most of a run), and the
// dynamic weight scale eps = m mean|W| is detached in that gradient. Autograd has one backward
// per graph node, so a forward graph whose backward is dE_b/du would also report dE_b/du as the
// sensitivity of the forward values, and the derivative of the update w - lr g through
// torch::autograd::grad(create_graph = true) would be that of another function. We therefore
// write the MLP's backward pass by hand with differentiable torch ops (softmax - onehot,
// matrix products, the dE_b/du factors, the ReLU mask) and let first-order autograd
// differentiate that: every sensitivity of J is then exact, including the one through the
// dynamic scale eps(w_k), which changes the forward values at every step.
//
// The meta-objective. The hardened network (sigma = 0) is piecewise constant in the quantized
// weights, so its validation loss has a zero gradient almost everywhere (only the float biases
// move it). The surrogate J evaluates the expectation forward at an evaluation noise level
//   sigma_eval = MetaGradOptions::eval_sigma for every unit      (default 0.1; weights, and
//                activations at activations.sigma_ratio * eval_sigma)
//   or sigma_eval = sigma_{K-1} (eval_at_last_sigma = true)
// With a fixed sigma_eval the gradient flows only through the trajectory w_1..w_K (how the noise
// schedule shapes the weights), so an untaken step has no influence: K = 0 gives dJ/dsigma = 0.
// With eval_at_last_sigma the last row also gets the direct "evaluate with more noise" term,
// which a controller can exploit without improving the hard network. Both the surrogate and the
// hard loss/accuracy (sigma = 0, the trainer's evaluation) of w_K are reported.
//
// Non-smooth points. Uniform and triangular noise have densities with jumps: where an element
// u crosses a window edge theta_i +- s_b, the trainer's gradient jumps, and autograd returns
// the derivative of the smooth piece (the jump is a measure-zero event in sigma; central
// differences in double precision agree away from it, see tests/meta/test_metagrad.cpp).
// Normal and logistic noise are smooth everywhere. At s_f = 0 a unit is hard (its sigma gets a
// zero gradient, the one-sided derivative almost everywhere); at ratio * sigma = floor the max
// has a kink.
//
// Scope: networks of type "mlp" without BatchNorm (the Fashion-MNIST meta task family), ANA
// with the expectation strategy, SGD (momentum, nesterov, dampening, weight decay from the
// trainer's optimizer). Other networks/optimizers/strategies are c10::ValueError.
// The trainer is not modified. Its next batches and learning rates are reproduced exactly when
// it stands at an epoch boundary (after run(e)); steps past the end of an epoch continue into
// the next one with that epoch's batch order and learning rate.
//
// Use from the outer loop (the controller emits sigma as a tensor with a graph):
//
//   torch::Tensor sigma = controller(...);            // [U] (one per unit, all K steps)
//                                                     // or [K, U] (one row per step)
//   MetaGradResult r = metagrad(trainer, sigma, K, options);
//   sigma.backward(r.dsigma);                         // accumulates dJ/dtheta into the
//                                                     // controller's parameters
//   optimizer.step();                                 // (r.meta_loss is J, r.hard_loss the
//                                                     //  hard validation loss after K steps)
//
// Cost (README, "Meta-gradient (ANA)"): one call is about K forward + manual backward passes
// recorded for autograd plus one reverse pass through them; memory grows linearly with K.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "inner/differentiable.h"
#include "inner/trainer.h"

namespace qsched::meta {

struct MetaGradOptions {
  /// Noise level of the surrogate meta-objective (in ANA's parametrization, units of the
  /// quantum), used for every unit; ignored with eval_at_last_sigma. >= 0; 0 = hard network
  /// (only the float biases carry a gradient then).
  double eval_sigma = 0.1;
  /// Evaluate at the last step's sigma instead (needs K >= 1 for a [K, U] sigma).
  bool eval_at_last_sigma = false;
  /// Validation samples of the meta-objective: the first n of the trainer's validation split
  /// (fixed, in order); 0 = all of it.
  int64_t val_samples = 0;
  /// Working precision of the unroll (kFloat like the trainer, or kDouble for checks).
  torch::Dtype dtype = torch::kFloat;

  /// Names the field, the value and the rule (c10::ValueError).
  void validate() const;
};

struct MetaGradResult {
  double meta_loss = 0;          ///< J: surrogate validation loss after K steps (nats)
  double hard_loss = 0;          ///< validation loss of the hard network (sigma = 0) after K steps
  double hard_acc = 0;           ///< its accuracy (fraction)
  double initial_hard_loss = 0;  ///< the same before the K steps
  torch::Tensor dsigma;          ///< dJ/dsigma, same shape and dtype as sigma, CPU
  std::vector<torch::Tensor> final_parameters;  ///< w_K, detached: [W_0, b_0, ..., W_n, b_n]
  double seconds = 0;                           ///< wall time of the call
};

/// J and dJ/dsigma after K unrolled steps from `state`'s current parameters and momentum.
/// sigma: [U] (the same levels for every step) or [K, U] (row k for step k), U = scheduled ANA
/// units of the trainer (AnaAlgorithm::units(), forward order), values finite and >= 0.
/// K >= 0. Deterministic: the same trainer state, sigma, K and options give identical results.
MetaGradResult metagrad(inner::Trainer& state, const torch::Tensor& sigma, int64_t K,
                        const MetaGradOptions& options = {});

}  // namespace qsched::meta
