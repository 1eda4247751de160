#include "inner/observations.h"

#include <cmath>

namespace qsched::inner {

nlohmann::json observe_layer(const QuantLayerInfo& info, const torch::Tensor& w_in,
                             const torch::Tensor& q_in, const std::vector<double>& levels,
                             const torch::Tensor& grad) {
  torch::NoGradGuard ng;
  TORCH_INTERNAL_ASSERT(levels.size() >= 2);
  auto w = w_in.detach().to(torch::kDouble).reshape({-1});
  auto q = q_in.detach().to(torch::kDouble).reshape({-1});
  const double wn = w.norm().item<double>();
  const double err = (w - q).norm().item<double>();
  // Distance to the nearest threshold in units of that threshold's level gap.
  auto near = torch::full_like(w, INFINITY);
  for (size_t i = 1; i < levels.size(); ++i) {
    const double theta = 0.5 * (levels[i - 1] + levels[i]);
    const double gap = levels[i] - levels[i - 1];
    near = torch::minimum(near, (w - theta).abs() / gap);
  }
  const double n = static_cast<double>(std::max<int64_t>(w.numel(), 1));
  auto finite = [](double v) { return std::isfinite(v) ? v : 0.0; };
  return {{"kind", info.kind == LayerKind::kConv2d ? 1 : 0},
          {"fan_in", info.fan_in},
          {"fan_out", info.fan_out},
          {"numel", info.numel},
          {"weight_norm", finite(wn)},
          {"weight_mean_abs", finite(w.abs().mean().item<double>())},
          {"weight_std", finite(w.numel() > 1 ? w.std(false).item<double>() : 0.0)},
          {"quant_error", finite(wn > 0 ? err / wn : 0.0)},
          {"near_threshold", near.lt(kNearThreshold).sum().item<double>() / n},
          {"grad_norm", grad.defined() ? finite(grad.detach().norm().item<double>()) : 0.0}};
}

}  // namespace qsched::inner
