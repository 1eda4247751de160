#include "meta/features.h"

#include <algorithm>
#include <cmath>

namespace qsched::meta {

using json = nlohmann::json;

const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> k = {
      "progress",    "rel_depth",      "is_conv",    "log_fan_in", "log_fan_out",    "log_numel",
      "base",        "previous",       "train_loss", "val_loss",   "generalization", "weight_scale",
      "quant_error", "near_threshold", "grad_norm",  "observed"};
  return k;
}

torch::Tensor make_features(const sched::ScheduleContext& ctx, const std::vector<double>& base,
                            sched::Quantity quantity) {
  const int64_t L = ctx.num_layers;
  TORCH_CHECK_VALUE(static_cast<int64_t>(base.size()) == L, "controller features: base gave ",
                    base.size(), " values for ", L, " layers");
  const json* layers = nullptr;
  if (ctx.observations.is_object() && ctx.observations.contains("layers")) {
    layers = &ctx.observations.at("layers");
    TORCH_CHECK_VALUE(layers->is_array() && static_cast<int64_t>(layers->size()) == L,
                      "controller features: observations describe ",
                      layers->is_array() ? layers->size() : 0, " layers, the schedule has ", L);
  }
  auto value = [&](double v) { return quantity == sched::Quantity::kFraction ? v : std::tanh(v); };
  auto get = [](const json& o, const char* k) {
    auto it = o.find(k);
    return it != o.end() && it->is_number() ? it->get<double>() : 0.0;
  };
  const double T = static_cast<double>(std::max<int64_t>(ctx.total_epochs - 1, 1));
  torch::Tensor x = torch::zeros({L, kNumFeatures}, torch::kFloat);
  auto a = x.accessor<float, 2>();
  for (int64_t l = 0; l < L; ++l) {
    double f[kNumFeatures] = {0};
    f[0] = static_cast<double>(ctx.epoch) / T;
    f[1] = l < static_cast<int64_t>(ctx.rel_depth.size())
               ? ctx.rel_depth[l]
               : (L == 1 ? 0.0 : static_cast<double>(l) / static_cast<double>(L - 1));
    f[6] = value(base[l]);
    f[7] = value(ctx.previous.empty() ? base[l] : ctx.previous.at(l));
    f[8] = std::tanh(ctx.train_loss);
    f[9] = std::tanh(ctx.val_loss);
    f[10] = std::tanh(5.0 * (ctx.val_loss - ctx.train_loss));
    if (layers) {
      const json& o = (*layers)[l];
      const double fan_in = std::max(get(o, "fan_in"), 1.0);
      f[2] = get(o, "kind") > 0.5 ? 1.0 : 0.0;
      f[3] = std::log10(fan_in) / 4.0;
      f[4] = std::log10(std::max(get(o, "fan_out"), 1.0)) / 4.0;
      f[5] = std::log10(std::max(get(o, "numel"), 1.0)) / 6.0;
      f[11] = std::tanh(get(o, "weight_std") * std::sqrt(fan_in));
      f[12] = std::min(get(o, "quant_error"), 2.0);
      f[13] = get(o, "near_threshold");
      const double wn = get(o, "weight_norm");
      const double rel = wn > 0 ? get(o, "grad_norm") / wn : 0.0;
      f[14] = std::clamp(std::log10(rel + 1e-12) / 3.0 + 1.0, -2.0, 2.0);
      f[15] = 1.0;
    }
    for (int64_t k = 0; k < kNumFeatures; ++k)
      a[l][k] = static_cast<float>(std::isfinite(f[k]) ? f[k] : 0.0);
  }
  return x;
}

}  // namespace qsched::meta
