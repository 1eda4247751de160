#pragma once
// A trainer's run as a differentiable function of its schedule values: what a meta-gradient
// (meta/metagrad.h) unrolls. An algorithm offers one through Algorithm::differentiable(t) when
// its inner step is differentiable in the values its schedule gives (ANA under the expectation
// strategy: inner/ana/differentiable.h); the registry says so up front
// (AlgorithmSpec::differentiable), so a meta config can be refused before anything runs.
//
//   params  = fn.parameters(t, dtype)                 copies of the trainer's parameters
//   logits  = fn.forward(params, x, values)           differentiable in params and values
//   {loss, grads} = fn.loss_and_grad(params, x, y, values)
//                                                     the gradient the trainer's backward pass
//                                                     computes, as a differentiable function
#include <torch/torch.h>

#include <vector>

namespace qsched::inner {

class Trainer;

class DifferentiableRun {
 public:
  virtual ~DifferentiableRun() = default;
  /// Schedule columns (scheduled units): values has shape [num_units()].
  virtual int64_t num_units() const = 0;
  /// The trainer's tensors this function takes as parameters, in its order (the live tensors:
  /// the optimizer's state is keyed by them).
  virtual std::vector<torch::Tensor> live_parameters(Trainer& t) const = 0;
  /// Detached copies of live_parameters in `dtype`.
  std::vector<torch::Tensor> parameters(Trainer& t, torch::Dtype dtype) const {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> p;
    for (const auto& x : live_parameters(t)) p.push_back(x.detach().to(dtype).clone());
    return p;
  }
  /// Logits of inputs x under schedule values `values` [num_units()].
  virtual torch::Tensor forward(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                                const torch::Tensor& values) const = 0;

  struct LossGrad {
    torch::Tensor loss;                ///< mean cross-entropy of the batch
    std::vector<torch::Tensor> grads;  ///< the trainer's gradient, same order as params
  };
  /// The loss and the gradient the trainer's backward pass computes, both differentiable
  /// functions of params and values.
  virtual LossGrad loss_and_grad(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                                 const torch::Tensor& y, const torch::Tensor& values) const = 0;
};

}  // namespace qsched::inner
