#pragma once
// Per-layer observations that quantization algorithms hand to a (non-static) schedule at the
// start of every quantization epoch, through ScheduleContext::observations:
//
//   {"layers": [ {per scheduled layer l, forward order}, ... ]}
//
// Keys of one layer (all finite doubles; raw values, the consumer normalizes them):
//   kind            0 = Linear, 1 = Conv2d
//   fan_in, fan_out, numel      sizes of the weight tensor (QuantLayerInfo)
//   weight_norm     ||W||_2
//   weight_mean_abs mean |W|
//   weight_std      std(W) (population)
//   quant_error     ||W - Q(W)||_2 / ||W||_2: relative error of projecting the current
//                   weights onto the algorithm's hard grid Q (INQ codebook, ANA eps*levels)
//   near_threshold  fraction of weights whose distance to the nearest decision threshold
//                   theta_i = (q_{i-1} + q_i)/2 is below kNearThreshold * (q_i - q_{i-1}),
//                   i.e. weights that a small update would move to another level
//   grad_norm       ||dL/dW||_2 of the last optimizer step (0 when no gradient exists yet)
//
// Hand-coded (static) schedules never read them, so algorithms compute them only when
// Schedule::is_static() is false; this does not change training (no random draws, no writes).
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "inner/network.h"

namespace qsched::inner {

/// Relative half-width of the "near a threshold" band, in units of the local level gap.
constexpr double kNearThreshold = 0.1;

/// Observation of one layer (see above). `levels`: the sorted hard levels in weight units
/// (all signed levels, at least 2); `q`: Q(w) on those levels; `grad`: may be undefined.
nlohmann::json observe_layer(const QuantLayerInfo& info, const torch::Tensor& w,
                             const torch::Tensor& q, const std::vector<double>& levels,
                             const torch::Tensor& grad);

}  // namespace qsched::inner
