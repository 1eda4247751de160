#pragma once
// ANA's run as a differentiable function of its noise levels (inner/differentiable.h), for the
// meta-gradient (meta/metagrad.h explains the maths: the hand-written backward pass, the
// detached dynamic scale, the backward noise). AnaAlgorithm::differentiable() returns one.
#include <torch/torch.h>

#include <vector>

#include "inner/ana/ana.h"
#include "inner/differentiable.h"

namespace qsched::inner::ana {

/// The ANA MLP of a trainer as a pure function of its parameters and noise levels. It reads the
/// architecture and every quantizer setting (levels, scale rule and fixed scales, forward and
/// backward noise, parametrization, ratios, floor, activation quantizers, excluded units) from
/// the trainer's AnaAlgorithm, i.e. from the same "ana" config section, so it is the same
/// function as the trainer's network under the expectation strategy.
class AnaMlpFunction : public DifferentiableRun {
 public:
  /// Needs an "mlp" network without batchnorm whose ANA algorithm has started and not finished,
  /// with the expectation strategy (c10::ValueError otherwise).
  explicit AnaMlpFunction(Trainer& t);

  int64_t num_units() const override { return num_units_; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  /// The network's [W_0, b_0, ..., W_n, b_n].
  std::vector<torch::Tensor> live_parameters(Trainer& t) const override;

  /// Logits [N, classes] of the expectation forward with unit levels sigma [U] (parametrized;
  /// differentiable in params and sigma). A unit with sigma = 0 is hard. x: [N, C, H, W].
  torch::Tensor forward(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                        const torch::Tensor& sigma) const override;

  /// The loss and the gradient the trainer's backward pass computes (ANA's backward noise,
  /// detached dynamic scales), both differentiable functions of params and sigma.
  LossGrad loss_and_grad(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                         const torch::Tensor& y, const torch::Tensor& sigma) const override;

 private:
  struct Quant {        // one quantizer: weights of a layer or the activation after it
    int64_t unit = -1;  ///< scheduled unit (-1: float weights / ReLU activation)
    Levels levels;
    bool dynamic = false;  ///< eps from the current weights (differentiable here)
    ScaleOptions scale;
    double eps = 1.0;
    double sigma_ratio = 1.0;  ///< activations: sigma = ratio * sigma_unit
  };
  struct Layer {
    Quant weight;
    bool hidden = false;  ///< followed by an activation
    Quant act;
  };
  /// What the hand-written backward pass reads from the forward pass, per layer.
  struct Trace {
    std::vector<torch::Tensor> input;       ///< h_l [N, in]
    std::vector<torch::Tensor> weight;      ///< the effective weight [out, in]
    std::vector<torch::Tensor> weight_fac;  ///< dE_b/du of the weights (undefined: float)
    std::vector<torch::Tensor> act_fac;     ///< dE_b/du or the ReLU mask after hidden layers
  };
  torch::Tensor run_forward(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                            const torch::Tensor& sigma, Trace* trace) const;
  /// eps * E[Q(x / eps + nu)] (unit sigma * ratio; hard at 0; float: identity / ReLU), and in
  /// *factor (if set) the trainer's backward factor dE_b/du (ReLU: the mask x > 0).
  torch::Tensor quantize(const Quant& q, bool activation, const torch::Tensor& x,
                         const torch::Tensor& sigma, torch::Tensor* factor) const;

  std::vector<Layer> layers_;
  int64_t num_units_ = 0;
  AnaOptions opt_;
};

}  // namespace qsched::inner::ana
