#pragma once
// The learned schedule controller: one GRU cell shared by all quantizable layers, acting as a
// residual around a hand-coded base schedule.
//
//   every quantization epoch t, for all L layers at once:
//     x_l   = features(ctx, l)                                    [F]  (meta/features.h)
//     c     = mean_l h_l(t-1)                                     [H]  pooled cross-layer context
//     h_l(t)= GRUCell([x_l, c], h_l(t-1))        h_l(-1) = 0      [H]  one hidden state per layer
//     d_l   = head(h_l(t))                                        scalar; head starts at 0
//   INQ (fractions):  f_l(t) = 1                                          t = T-1
//                     f_l(t) = max(f_l(t-1), clamp(base_l(t) + d_l, 0, 1))  otherwise
//   ANA (noise):      s_l(t) = 0                                          t = T-1
//                     s_l(t) = min(s_l(t-1), base_l(t) * exp(clamp(d_l, -4, 1)))  otherwise
//   (f_l(-1) = 0 and s_l(-1) = +inf: no constraint at t = 0.)
//
// So the outputs satisfy the schedule invariants by construction for any parameters (fractions
// in [0,1], non-decreasing, 1 at the end; noise >= 0, non-increasing, 0 at the end), the
// controller applies to networks of any depth and width, and with the zero-initialized head
// (d = 0 exactly) it reproduces the base schedule bit for bit: base + 0 = base, base * exp(0)
// = base, and the max/min with the previous value is a no-op because the base is monotone.
//
// ControllerSchedule adapts a controller to sched::Schedule (is_static() = false): inner/
// sees only a Schedule. Its per-layer hidden state lives in the schedule object (one inner run),
// is reset at t = 0 and can be saved/restored (truncated runs kept across segments).
//
// The parameters are also seen as one flat float32 vector theta (ES perturbs and updates theta;
// flat_parameters()/set_flat_parameters() in registration order: gru.weight_ih, gru.weight_hh,
// gru.bias_ih, gru.bias_hh, head.weight, head.bias).
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::meta {

using json = nlohmann::json;

struct ControllerOptions {
  /// "controller.hidden = 0. Violated constraint: 1 <= hidden <= 256".
  void validate() const;
  json to_json() const;
  /// Strict keys {"hidden"}; `path` names the section in errors.
  static ControllerOptions from_json(const json& j, const std::string& path);

  /// Hidden units of the shared GRU cell (NNAdam uses 32 per tensor; our inputs are fewer).
  TORCH_ARG(int64_t, hidden) = 16;
  /// Seed of the initial GRU weights (PyTorch's default U(+-1/sqrt(H)) init, drawn from a
  /// private generator); the head is always initialized to 0.
  TORCH_ARG(uint64_t, seed) = 0;
};

class ControllerImpl : public torch::nn::Module {
 public:
  explicit ControllerImpl(ControllerOptions opt = {});

  /// One epoch for all layers: features [L, F] (float32) and hidden [L, H] -> {new hidden
  /// [L, H], d [L]}. Differentiable (autograd through the parameters, e.g. for a meta-gradient);
  /// call under NoGradGuard when no gradient is needed.
  std::pair<torch::Tensor, torch::Tensor> step(const torch::Tensor& features,
                                               const torch::Tensor& hidden);

  int64_t num_parameters() const;
  /// theta, a new contiguous float32 [P] tensor (no autograd history).
  torch::Tensor flat_parameters() const;
  /// Copies theta ([P], any floating dtype) into the parameters.
  void set_flat_parameters(const torch::Tensor& theta);

  const ControllerOptions& options() const { return opt_; }

 private:
  ControllerOptions opt_;
  torch::nn::GRUCell gru_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(Controller);

/// The residual combination above, on double tensors [L] (differentiable in d): `prev` empty
/// at t = 0.
torch::Tensor combine_outputs(sched::Quantity q, const torch::Tensor& base,
                              const std::vector<double>& prev, const torch::Tensor& d, bool last);

/// A controller seen as a Schedule. Owns its base schedule; shares the controller module (its
/// parameters may change between epochs, e.g. PES updates, and are read at every call).
class ControllerSchedule : public sched::Schedule {
 public:
  ControllerSchedule(Controller controller, std::unique_ptr<sched::Schedule> base);

  sched::Quantity quantity() const override { return base_->quantity(); }
  std::vector<double> values(const sched::ScheduleContext& ctx) override;
  bool is_static() const override { return false; }
  /// {"family": "controller", "hidden": H, "base": base->describe()}
  json describe() const override;

  /// Hidden state [L, H] (undefined before the first call) and back (truncated runs).
  torch::Tensor hidden() const { return hidden_; }
  void set_hidden(const torch::Tensor& h) { hidden_ = h; }

  /// The values of the last values() call recomputed from the same context, base values and
  /// input hidden state, with an autograd graph through the controller's CURRENT parameters
  /// (the meta-gradient estimator; the parameters may be double): double [L]. Equal to what
  /// values() returned while the parameters are unchanged. c10::ValueError before any call.
  torch::Tensor last_values_with_grad();

 private:
  Controller controller_;
  std::unique_ptr<sched::Schedule> base_;
  torch::Tensor hidden_;
  // Inputs of the last values() call (for last_values_with_grad).
  bool called_ = false;
  sched::ScheduleContext last_ctx_;
  std::vector<double> last_base_;
  torch::Tensor last_hidden_in_;
};

}  // namespace qsched::meta
