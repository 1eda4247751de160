#include "meta/controller.h"

#include <cmath>

#include "datasets/dataset.h"
#include "inner/base/json_reader.h"
#include "inner/runtime.h"
#include "meta/features.h"

namespace qsched::meta {

void ControllerOptions::validate() const {
  TORCH_CHECK_VALUE(hidden() >= 1 && hidden() <= 256, "controller.hidden = ", hidden(),
                    ". Violated constraint: 1 <= hidden <= 256");
}

json ControllerOptions::to_json() const { return {{"hidden", hidden()}}; }

ControllerOptions ControllerOptions::from_json(const json& j, const std::string& path) {
  ControllerOptions o;
  JsonReader r(j, path);
  o.hidden(r.get<int64_t>("hidden", o.hidden()));
  r.finish();
  o.validate();
  return o;
}

ControllerImpl::ControllerImpl(ControllerOptions opt) : opt_(opt) {
  opt_.validate();
  const int64_t H = opt_.hidden();
  // The submodules' default init draws from torch's global generator (then overwritten below):
  // hold its lock so a controller built in a worker thread cannot shift a trainer's seeded init.
  std::lock_guard<std::mutex> lock(global_generator_mutex());
  gru_ = register_module("gru", torch::nn::GRUCell(torch::nn::GRUCellOptions(kNumFeatures + H, H)));
  head_ = register_module("head", torch::nn::Linear(H, 1));
  // Deterministic init from a private generator (never torch's global one), head = 0.
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(data::derive_seed(opt_.seed(), 0xc0417));
  const double k = 1.0 / std::sqrt(static_cast<double>(H));
  for (auto& p : gru_->parameters()) p.uniform_(-k, k, gen);
  head_->weight.zero_();
  head_->bias.zero_();
}

std::pair<torch::Tensor, torch::Tensor> ControllerImpl::step(const torch::Tensor& features,
                                                             const torch::Tensor& hidden) {
  TORCH_CHECK(features.dim() == 2 && features.size(1) == kNumFeatures,
              "Controller::step: features must be [L, ", kNumFeatures, "], got ", features.sizes());
  TORCH_CHECK(
      hidden.dim() == 2 && hidden.size(0) == features.size(0) && hidden.size(1) == opt_.hidden(),
      "Controller::step: hidden must be [L, H]");
  auto context = hidden.mean(0, /*keepdim=*/true).expand({features.size(0), opt_.hidden()});
  auto h = gru_->forward(torch::cat({features, context}, 1), hidden);
  auto d = head_->forward(h).squeeze(1);
  return {h, d};
}

int64_t ControllerImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

torch::Tensor ControllerImpl::flat_parameters() const {
  std::vector<torch::Tensor> v;
  for (const auto& p : parameters()) v.push_back(p.detach().reshape({-1}).to(torch::kFloat));
  return torch::cat(v).contiguous();
}

void ControllerImpl::set_flat_parameters(const torch::Tensor& theta) {
  TORCH_CHECK_VALUE(theta.dim() == 1 && theta.numel() == num_parameters(),
                    "controller parameters: got ", theta.numel(), " values, the controller has ",
                    num_parameters());
  torch::NoGradGuard ng;
  int64_t off = 0;
  for (auto& p : parameters()) {
    p.copy_(theta.slice(0, off, off + p.numel()).view(p.sizes()));
    off += p.numel();
  }
}

torch::Tensor combine_outputs(sched::Quantity q, const torch::Tensor& base,
                              const std::vector<double>& prev, const torch::Tensor& d, bool last) {
  auto dd = d.to(torch::kDouble);
  if (q == sched::Quantity::kFraction) {
    if (last) return torch::ones_like(base);
    auto v = (base + dd).clamp(0.0, 1.0);
    if (!prev.empty()) v = torch::maximum(v, torch::tensor(prev, torch::kDouble));
    return v;
  }
  if (last) return torch::zeros_like(base);
  auto v = base * torch::exp(dd.clamp(-4.0, 1.0));
  if (!prev.empty()) v = torch::minimum(v, torch::tensor(prev, torch::kDouble));
  return v;
}

ControllerSchedule::ControllerSchedule(Controller controller, std::unique_ptr<sched::Schedule> base)
    : controller_(std::move(controller)), base_(std::move(base)) {
  TORCH_CHECK(controller_ && base_, "ControllerSchedule: controller and base are required");
}

std::vector<double> ControllerSchedule::values(const sched::ScheduleContext& ctx) {
  const int64_t L = ctx.num_layers;
  const int64_t H = controller_->options().hidden();
  auto base = base_->values(ctx);
  if (ctx.epoch == 0 || !hidden_.defined() || hidden_.size(0) != L)
    hidden_ = torch::zeros({L, H}, torch::kFloat);
  called_ = true;
  last_ctx_ = ctx;
  last_base_ = base;
  last_hidden_in_ = hidden_;
  torch::NoGradGuard ng;
  // Inputs in the parameters' dtype (float32 normally; double for gradient checks).
  auto dtype = controller_->parameters().front().scalar_type();
  auto x = make_features(ctx, base, quantity()).to(dtype);
  auto [h, d] = controller_->step(x, hidden_.to(dtype));
  hidden_ = h;
  auto v = combine_outputs(quantity(), torch::tensor(base, torch::kDouble), ctx.previous, d,
                           ctx.epoch + 1 == ctx.total_epochs);
  auto a = v.contiguous();
  return std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + L);
}

torch::Tensor ControllerSchedule::last_values_with_grad() {
  TORCH_CHECK_VALUE(called_, "ControllerSchedule: no values() call to recompute yet");
  torch::AutoGradMode grad(true);
  auto dtype = controller_->parameters().front().scalar_type();
  auto x = make_features(last_ctx_, last_base_, quantity()).to(dtype);
  auto [h, d] = controller_->step(x, last_hidden_in_.to(dtype));
  return combine_outputs(quantity(), torch::tensor(last_base_, torch::kDouble), last_ctx_.previous,
                         d, last_ctx_.epoch + 1 == last_ctx_.total_epochs);
}

json ControllerSchedule::describe() const {
  return {{"family", "controller"},
          {"hidden", controller_->options().hidden()},
          {"base", base_->describe()}};
}

}  // namespace qsched::meta
