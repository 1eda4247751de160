#pragma once
// The controller's per-layer input features (one row per scheduled layer per epoch), all
// normalized to roughly [-1, 1] or [0, 1]; a non-finite value becomes 0.
//
//   #  name              value                                           source
//   0  progress          t / max(T - 1, 1)                               ctx.epoch, total_epochs
//   1  rel_depth         l / max(L - 1, 1)                               ctx.rel_depth
//   2  is_conv           1 for Conv2d, 0 for Linear                      observations.kind
//   3  log_fan_in        log10(fan_in) / 4                               observations.fan_in
//   4  log_fan_out       log10(fan_out) / 4                              observations.fan_out
//   5  log_numel         log10(numel) / 6                                observations.numel
//   6  base              INQ: base_l(t); ANA: tanh(base_l(t))            base schedule
//   7  previous          INQ: f_l(t-1); ANA: tanh(s_l(t-1)); the base value at t = 0
//   8  train_loss        tanh(train loss of the last epoch)  (0 at t = 0 of a run without
//                        pre-training)                                   ctx.train_loss
//   9  val_loss          tanh(validation loss of the last epoch)         ctx.val_loss
//  10  generalization    tanh(5 (val_loss - train_loss))
//  11  weight_scale      tanh(std(W) sqrt(fan_in))  (~0.52 at PyTorch's default init)
//  12  quant_error       min(||W - Q(W)|| / ||W||, 2)                    observations.quant_error
//  13  near_threshold    fraction of weights near a decision threshold   observations
//  14  grad_norm         clamp(log10(||dL/dW|| / ||W|| + 1e-12) / 3 + 1, -2, 2)
//  15  observed          1 when the context carries observations, else 0 (features 2-5 and
//                        11-14 are then 0: e.g. contexts built by tests or replay)
//
// Observations are the keys of inner/observations.h. A context with observations for a
// different number of layers is a c10::ValueError.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::meta {

constexpr int64_t kNumFeatures = 16;
/// Version of the feature spec above; saved with controllers (a controller trained on another
/// spec is rejected when loaded).
constexpr int64_t kFeatureVersion = 1;

/// Names of the features, in order (saved in controller.json).
const std::vector<std::string>& feature_names();

/// Feature matrix [L, kNumFeatures] (float32) for ctx; `base` = base schedule values at
/// ctx.epoch, `quantity` selects the value normalization.
torch::Tensor make_features(const sched::ScheduleContext& ctx, const std::vector<double>& base,
                            sched::Quantity quantity);

}  // namespace qsched::meta
