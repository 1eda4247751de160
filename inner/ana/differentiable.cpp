// ANA's run as a differentiable function of its noise levels (see differentiable.h).
#include "inner/ana/differentiable.h"

#include <cmath>

#include "inner/trainer.h"

namespace qsched::inner::ana {

namespace {

/// sigma (parametrized, tensor) -> native scale of family f.
torch::Tensor native(const AnaOptions& o, NoiseFamily f, const torch::Tensor& sigma) {
  return o.std_parametrization ? sigma * std_to_native(f) : sigma;
}

/// E[Q(u + nu)] = q_0 + sum_i dq_i F((u - theta_i) / s) with s > 0 a 0-dim tensor, as one
/// autograd node that saves only u (the unroll keeps K steps of it alive): the forward is ANA's
/// fused operator, the backward
///   dE/du = sum_i dq_i p(u - theta_i)
///   dE/ds = sum_i dq_i F'(z_i) * (-(u - theta_i) / s^2) = -(1/s) sum_i dq_i p(u - theta_i) (u -
///   theta_i)
/// (p the density at native scale s; uniform: the open windows, a.e. the same derivative).
class ExpectationFunction : public torch::autograd::Function<ExpectationFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u,
                               const torch::Tensor& s, const Levels& lv, NoiseFamily f) {
    const double sv = s.item<double>();
    ctx->save_for_backward({u});
    ctx->saved_data["s"] = sv;
    ctx->saved_data["family"] = static_cast<int64_t>(f);
    ctx->saved_data["levels"] = lv.values;
    ctx->saved_data["thresholds"] = lv.thresholds;
    return expected_quantize(u, lv, f, sv);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const torch::Tensor u = ctx->get_saved_variables()[0];
    const torch::Tensor& g = grad[0];
    Levels lv;
    lv.values = ctx->saved_data["levels"].toDoubleVector();
    lv.thresholds = ctx->saved_data["thresholds"].toDoubleVector();
    const auto f = static_cast<NoiseFamily>(ctx->saved_data["family"].toInt());
    const double s = ctx->saved_data["s"].toDouble();
    torch::Tensor gu = expected_quantize_vjp(g, u, lv, f, s);
    torch::Tensor acc;
    for (size_t i = 0; i < lv.thresholds.size(); ++i) {
      torch::Tensor v = u - lv.thresholds[i];
      torch::Tensor t = noise_pdf(f, v, s).mul_(v);
      const double dq = lv.values[i + 1] - lv.values[i];
      acc = acc.defined() ? acc.add_(t, dq) : t.mul_(dq);
    }
    torch::Tensor gs = acc.mul_(g).sum().mul_(-1.0 / s);
    return {gu, gs, torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor expectation(const torch::Tensor& u, const Levels& lv, NoiseFamily f,
                          const torch::Tensor& s) {
  return ExpectationFunction::apply(u, s, lv, f);
}

/// dE[Q(u + nu)]/du = sum_i dq_i p(u - theta_i) under native scale s > 0 (0-dim tensor).
/// Uniform: the open windows (theta - s, theta + s), as the operator's backward.
torch::Tensor expectation_grad(const torch::Tensor& u, const Levels& lv, NoiseFamily f,
                               const torch::Tensor& s) {
  if (f == NoiseFamily::kUniform) {
    torch::Tensor mask;  // sum_i dq_i 1{|u - theta_i| < s}: piecewise constant, no gradient
    {
      torch::NoGradGuard ng;
      const double sv = s.item<double>();
      for (size_t i = 0; i < lv.thresholds.size(); ++i) {
        const double dq = lv.values[i + 1] - lv.values[i];
        torch::Tensor m = (u.detach() - lv.thresholds[i]).abs_().lt_(sv).to(u.scalar_type());
        mask = mask.defined() ? mask.add_(m, dq) : m.mul_(dq);
      }
    }
    return mask / (2 * s);
  }
  torch::Tensor out;
  for (size_t i = 0; i < lv.thresholds.size(); ++i) {
    const double dq = lv.values[i + 1] - lv.values[i];
    torch::Tensor z = (u - lv.thresholds[i]) / s, p;
    switch (f) {
      case NoiseFamily::kTriangular:
        p = (1.0 - z.abs()).clamp_min(0.0);
        break;
      case NoiseFamily::kNormal:
        p = torch::exp(-0.5 * z * z) * (1.0 / std::sqrt(2.0 * M_PI));
        break;
      case NoiseFamily::kLogistic: {
        torch::Tensor g = torch::sigmoid(z);
        p = g * (1.0 - g);
        break;
      }
      case NoiseFamily::kUniform:
        break;
    }
    if (dq != 1.0) p = p * dq;
    out = out.defined() ? out + p : p;
  }
  return out / s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The functional network

AnaMlpFunction::AnaMlpFunction(Trainer& t) {
  auto* a = dynamic_cast<AnaAlgorithm*>(&t.algorithm());
  TORCH_CHECK_VALUE(a != nullptr, "metagrad: algorithm = \"", t.algorithm().name(),
                    "\". Violated constraint: AnaMlpFunction needs \"ana\"");
  AnaAlgorithm& alg = *a;
  opt_ = alg.options();
  auto& net = *t.network();
  const json& spec = net.spec();
  TORCH_CHECK_VALUE(spec.value("type", "") == "mlp" && !spec.value("batchnorm", false),
                    "metagrad: network = ", spec.dump(),
                    ". Violated constraint: the functional ANA forward supports \"mlp\" without "
                    "batchnorm");
  TORCH_CHECK_VALUE(opt_.strategy == Strategy::kExpectation, "metagrad: ana.strategy = \"",
                    to_string(opt_.strategy),
                    "\". Violated constraint: the meta-gradient needs \"expectation\" (the "
                    "forward pass must be differentiable in sigma)");
  TORCH_CHECK_VALUE(alg.started(), "metagrad: ANA has not started at epoch ", t.epoch(),
                    " (ana.pretrain_epochs = ", opt_.pretrain_epochs,
                    "). Violated constraint: call it once quantization runs");
  const int64_t L = net.num_quant_layers();
  TORCH_INTERNAL_ASSERT(static_cast<int64_t>(net.activations().size()) == L - 1);
  for (const auto& u : alg.units())
    TORCH_CHECK_VALUE(u.weight->active && (u.weight->dynamic || !opt_.weight_scale.dynamic),
                      "metagrad: the ANA run has finished (weights hardened). Violated "
                      "constraint: call it during quantization");

  layers_.resize(L);
  for (int64_t i = 0; i < L; ++i) {
    TORCH_INTERNAL_ASSERT(net.layer(i)->bias.defined());
    layers_[i].hidden = i + 1 < L;
  }
  const auto& units = alg.units();
  num_units_ = static_cast<int64_t>(units.size());
  for (int64_t j = 0; j < num_units_; ++j) {
    const auto& u = units[j];
    Quant& w = layers_.at(u.layer).weight;
    w.unit = j;
    w.levels = u.weight->levels;
    w.dynamic = u.weight->dynamic;
    w.scale = u.weight->scale.resolved(w.levels);
    w.eps = u.weight->eps;
    for (size_t k = 0; k < u.act.size(); ++k) {
      // MLP: activation a follows layer a.
      Quant& a = layers_.at(u.activations[k]).act;
      TORCH_INTERNAL_ASSERT(u.activations[k] == u.layer && u.act[k]->active);
      a.unit = j;
      a.levels = u.act[k]->levels;
      a.eps = u.act[k]->eps;
      a.sigma_ratio = opt_.activation_sigma_ratio;
    }
  }
}

std::vector<torch::Tensor> AnaMlpFunction::live_parameters(Trainer& t) const {
  auto& net = *t.network();
  std::vector<torch::Tensor> p;
  for (int64_t i = 0; i < num_layers(); ++i) {
    p.push_back(net.layer(i)->weight);
    p.push_back(net.layer(i)->bias);
  }
  return p;
}

torch::Tensor AnaMlpFunction::quantize(const Quant& q, bool activation, const torch::Tensor& x,
                                       const torch::Tensor& sigma, torch::Tensor* factor) const {
  if (q.unit < 0) {  // float: identity weights, ReLU activation
    if (factor) *factor = activation ? x.detach().gt(0.0).to(x.scalar_type()) : torch::Tensor();
    return activation ? torch::relu(x) : x;
  }
  torch::Tensor sig = sigma[q.unit];
  if (q.sigma_ratio != 1.0) sig = sig * q.sigma_ratio;
  // The quantum: fixed, or (dynamic weights) a differentiable statistic of the weights, so the
  // meta-gradient sees how eps(w_k) moves; the trainer's gradient treats it as a constant.
  torch::Tensor eps;
  if (q.dynamic) {
    eps = q.scale.rule == "mean_abs" ? x.abs().mean() * q.scale.multiplier
                                     : x.abs().max() * (q.scale.multiplier / q.levels.max_abs());
  } else {
    eps = torch::full({}, q.eps, x.options());
  }
  torch::Tensor u = x / eps;
  torch::Tensor e;
  if (sig.item<double>() > 0) {
    e = expectation(u, q.levels, opt_.noise, native(opt_, opt_.noise, sig));
  } else {
    torch::NoGradGuard ng;
    e = hard_quantize(u.detach(), q.levels);
  }
  if (factor) {
    torch::Tensor sb = sig * opt_.backward_ratio;
    if (opt_.backward_floor > 0) sb = sb.clamp_min(opt_.backward_floor);
    *factor = sb.item<double>() > 0 ? expectation_grad(u, q.levels, opt_.backward_noise,
                                                       native(opt_, opt_.backward_noise, sb))
                                    : torch::zeros_like(x);
  }
  return e * eps;
}

torch::Tensor AnaMlpFunction::run_forward(const std::vector<torch::Tensor>& params,
                                          const torch::Tensor& x, const torch::Tensor& sigma,
                                          Trace* trace) const {
  TORCH_CHECK_VALUE(static_cast<int64_t>(params.size()) == 2 * num_layers(),
                    "metagrad: ", params.size(), " parameter tensors, the network has ",
                    2 * num_layers(), " (weight and bias per layer)");
  TORCH_CHECK_VALUE(sigma.dim() == 1 && sigma.size(0) == num_units_, "metagrad: sigma has shape ",
                    sigma.sizes(), ". Violated constraint: [", num_units_, "] (one per unit)");
  torch::Tensor h = x.flatten(1).to(params[0].scalar_type());
  for (int64_t l = 0; l < num_layers(); ++l) {
    const Layer& layer = layers_[l];
    torch::Tensor wf, af;
    torch::Tensor w = quantize(layer.weight, false, params[2 * l], sigma, trace ? &wf : nullptr);
    if (trace) {
      trace->input.push_back(h);
      trace->weight.push_back(w);
      trace->weight_fac.push_back(wf);
    }
    h = torch::linear(h, w, params[2 * l + 1]);
    if (layer.hidden) {
      h = quantize(layer.act, true, h, sigma, trace ? &af : nullptr);
      if (trace) trace->act_fac.push_back(af);
    }
  }
  return h;
}

torch::Tensor AnaMlpFunction::forward(const std::vector<torch::Tensor>& params,
                                      const torch::Tensor& x, const torch::Tensor& sigma) const {
  return run_forward(params, x, sigma, nullptr);
}

AnaMlpFunction::LossGrad AnaMlpFunction::loss_and_grad(const std::vector<torch::Tensor>& params,
                                                       const torch::Tensor& x,
                                                       const torch::Tensor& y,
                                                       const torch::Tensor& sigma) const {
  Trace tr;
  torch::Tensor logits = run_forward(params, x, sigma, &tr);
  LossGrad r;
  r.loss = torch::nn::functional::cross_entropy(logits, y);
  // d mean CE / d logits = (softmax - onehot) / N, then the layers backwards.
  const int64_t n = logits.size(0);
  torch::Tensor dz =
      (torch::softmax(logits, 1) - torch::one_hot(y, logits.size(1)).to(logits.scalar_type())) /
      static_cast<double>(n);
  r.grads.resize(params.size());
  for (int64_t l = num_layers() - 1; l >= 0; --l) {
    torch::Tensor dw = dz.t().mm(tr.input[l]);
    r.grads[2 * l] = tr.weight_fac[l].defined() ? dw * tr.weight_fac[l] : dw;
    r.grads[2 * l + 1] = dz.sum(0);
    if (l > 0) dz = dz.mm(tr.weight[l]) * tr.act_fac[l - 1];
  }
  return r;
}

std::unique_ptr<DifferentiableRun> AnaAlgorithm::differentiable(Trainer& t) {
  return std::make_unique<AnaMlpFunction>(t);
}

}  // namespace qsched::inner::ana
