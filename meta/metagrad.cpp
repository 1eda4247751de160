// Truncated meta-gradient for ANA (see metagrad.h).
#include "meta/metagrad.h"

#include <chrono>
#include <cmath>

#include "datasets/dataset.h"
#include "inner/config.h"

namespace qsched::meta {

namespace {

/// The salt of the trainer's batch order (inner/trainer.cpp): the unroll replays the batches
/// the trainer would draw next (tested against a trainer epoch).
constexpr uint64_t kSaltTrainerBatches = 0xba7c;

/// The trainer's run as a differentiable function of its schedule values.
std::unique_ptr<inner::DifferentiableRun> differentiable_run(inner::Trainer& t) {
  auto fn = t.algorithm().differentiable(t);
  TORCH_CHECK_VALUE(fn != nullptr, "metagrad: algorithm = \"", t.algorithm().name(),
                    "\". Violated constraint: the meta-gradient needs an algorithm whose run is "
                    "differentiable in its schedule values (e.g. \"ana\")");
  return fn;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Options

void MetaGradOptions::validate() const {
  TORCH_CHECK_VALUE(std::isfinite(eval_sigma) && eval_sigma >= 0,
                    "MetaGradOptions::eval_sigma = ", eval_sigma,
                    ". Violated constraint: finite and >= 0");
  TORCH_CHECK_VALUE(val_samples >= 0, "MetaGradOptions::val_samples = ", val_samples,
                    ". Violated constraint: val_samples >= 0 (0 = the whole validation split)");
  TORCH_CHECK_VALUE(dtype == torch::kFloat || dtype == torch::kDouble,
                    "MetaGradOptions::dtype = ", c10::toString(dtype),
                    ". Violated constraint: Float or Double");
}

// ---------------------------------------------------------------------------------------------
// The unrolled meta-gradient

MetaGradResult metagrad(inner::Trainer& state, const torch::Tensor& sigma, int64_t K,
                        const MetaGradOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  options.validate();
  TORCH_CHECK_VALUE(K >= 0, "metagrad: K = ", K, ". Violated constraint: K >= 0 unrolled steps");
  auto fn_owner = differentiable_run(state);
  const inner::DifferentiableRun& fn = *fn_owner;
  const int64_t U = fn.num_units();
  TORCH_CHECK_VALUE(sigma.defined() && sigma.is_floating_point(),
                    "metagrad: sigma must be a floating-point tensor");
  TORCH_CHECK_VALUE((sigma.dim() == 1 && sigma.size(0) == U) ||
                        (sigma.dim() == 2 && sigma.size(0) == K && sigma.size(1) == U),
                    "metagrad: sigma has shape ", sigma.sizes(), ". Violated constraint: [", U,
                    "] or [K = ", K, ", ", U, "] (one per ANA unit, optionally per step)");
  {
    torch::NoGradGuard ng;
    TORCH_CHECK_VALUE(sigma.numel() == 0 ||
                          (sigma.isfinite().all().item<bool>() && sigma.min().item<double>() >= 0),
                      "metagrad: sigma holds ", sigma.numel() ? sigma.min().item<double>() : 0.0,
                      ". Violated constraint: noise levels are finite and >= 0");
  }
  TORCH_CHECK_VALUE(!(options.eval_at_last_sigma && sigma.dim() == 2 && K == 0),
                    "metagrad: eval_at_last_sigma with K = 0 and a [0, U] sigma. Violated "
                    "constraint: there is no last step's sigma");
  auto* sgd = dynamic_cast<torch::optim::SGD*>(&state.optimizer());
  TORCH_CHECK_VALUE(sgd != nullptr, "metagrad: train.optimizer.name = \"",
                    state.config().train.optimizer.name,
                    "\". Violated constraint: the functional inner step implements \"sgd\"");
  const auto& so =
      static_cast<const torch::optim::SGDOptions&>(sgd->param_groups().at(0).options());
  const auto& cfg = state.config();
  const auto& val = state.data().val;
  TORCH_CHECK_VALUE(val.size() > 0, "metagrad: the validation split is empty (data.val_size)");

  const torch::Dtype dt = options.dtype;
  torch::Tensor leaf = sigma.detach().to(torch::kCPU, dt).clone().requires_grad_(true);
  auto sigma_at = [&](int64_t k) { return leaf.dim() == 1 ? leaf : leaf[k]; };

  std::vector<torch::Tensor> p = fn.parameters(state, dt);
  std::vector<torch::Tensor> buf(p.size());
  if (so.momentum() != 0) {  // the trainer's momentum buffers, where it has taken a step
    const auto live = fn.live_parameters(state);
    for (size_t i = 0; i < live.size(); ++i) {
      auto it = sgd->state().find(c10::guts::to_string(live[i].unsafeGetTensorImpl()));
      if (it == sgd->state().end()) continue;
      const auto& st = static_cast<const torch::optim::SGDParamState&>(*it->second);
      if (st.momentum_buffer().defined()) buf[i] = st.momentum_buffer().detach().to(dt).clone();
    }
  }

  const int64_t nv =
      options.val_samples > 0 ? std::min(options.val_samples, val.size()) : val.size();
  const torch::Tensor xv = val.images.slice(0, 0, nv).to(dt), yv = val.labels.slice(0, 0, nv);
  torch::Tensor zeros = torch::zeros({U}, dt);
  auto hard_eval = [&](const std::vector<torch::Tensor>& w, double* acc) {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> d;
    for (const auto& t : w) d.push_back(t.detach());
    torch::Tensor logits = fn.forward(d, xv, zeros);
    if (acc) *acc = logits.argmax(1).eq(yv).to(torch::kDouble).mean().item<double>();
    return torch::nn::functional::cross_entropy(logits, yv).item<double>();
  };

  MetaGradResult r;
  r.initial_hard_loss = hard_eval(p, nullptr);

  data::Batcher batcher(state.data().train, cfg.train.batch_size, true,
                        data::derive_seed(cfg.seed, kSaltTrainerBatches));
  const int64_t spe = batcher.batches_per_epoch();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t epoch = state.epoch() + k / spe;
    if (k % spe == 0) batcher.start_epoch(epoch);
    torch::Tensor x, y;
    TORCH_INTERNAL_ASSERT(batcher.next(x, y));
    const double lr = inner::lr_at_epoch(cfg.train, epoch - state.lr_epoch_offset());
    auto g = fn.loss_and_grad(p, x, y, sigma_at(k)).grads;
    for (size_t i = 0; i < p.size(); ++i) {
      torch::Tensor d = so.weight_decay() != 0 ? g[i] + so.weight_decay() * p[i] : g[i];
      if (so.momentum() != 0) {
        buf[i] = buf[i].defined() ? so.momentum() * buf[i] + (1 - so.dampening()) * d : d;
        d = so.nesterov() ? d + so.momentum() * buf[i] : buf[i];
      }
      p[i] = p[i] - lr * d;
    }
  }

  torch::Tensor eval_sigma = !options.eval_at_last_sigma ? torch::full({U}, options.eval_sigma, dt)
                             : leaf.dim() == 1           ? leaf
                                                         : leaf[K - 1];
  torch::Tensor J = torch::nn::functional::cross_entropy(fn.forward(p, xv, eval_sigma), yv);
  r.meta_loss = J.item<double>();
  torch::Tensor grad;
  if (J.requires_grad()) {
    grad = torch::autograd::grad({J}, {leaf}, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                 /*allow_unused=*/true)[0];
  }
  if (!grad.defined()) grad = torch::zeros_like(leaf);
  r.dsigma = grad.detach().to(sigma.scalar_type());
  r.hard_loss = hard_eval(p, &r.hard_acc);
  for (const auto& t : p) r.final_parameters.push_back(t.detach());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qsched::meta
