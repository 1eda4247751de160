// ANA quantizer: levels, noise families and the autograd operator (see ana.h).
#include <cmath>
#include <sstream>

#include "inner/ana/ana.h"

namespace qsched::inner::ana {

// ---------------------------------------------------------------------------------------------
// Levels

namespace {
std::vector<double> midpoints(const std::vector<double>& v) {
  std::vector<double> t;
  for (size_t i = 1; i < v.size(); ++i) t.push_back(0.5 * (v[i - 1] + v[i]));
  return t;
}
}  // namespace

Levels Levels::binary() { return {{-1.0, 1.0}, {0.0}, "binary"}; }

Levels Levels::ternary() { return {{-1.0, 0.0, 1.0}, {-0.5, 0.5}, "ternary"}; }

Levels Levels::uniform(int bits, bool is_signed, bool balanced, const std::string& what) {
  TORCH_CHECK_VALUE(bits >= 1 && bits <= 8, "config: ", what, ".bits = ", bits,
                    ". Violated constraint: 1 <= bits <= 8");
  TORCH_CHECK_VALUE(!is_signed || bits >= 2, "config: ", what,
                    ".bits = 1 with signed levels. Violated constraint: signed levels need bits "
                    ">= 2 (use \"binary\" for {-1, +1})");
  TORCH_CHECK_VALUE(is_signed || !balanced, "config: ", what,
                    ".balanced = true needs signed levels");
  const int64_t n = int64_t{1} << bits;
  std::vector<double> v;
  int64_t lo = is_signed ? -(n / 2) + (balanced ? 1 : 0) : 0;
  int64_t hi = is_signed ? n / 2 - 1 : n - 1;
  for (int64_t q = lo; q <= hi; ++q) v.push_back(static_cast<double>(q));
  Levels l;
  l.values = v;
  l.thresholds = midpoints(v);
  l.name =
      (is_signed ? (balanced ? "int" + std::to_string(bits) + "b" : "int" + std::to_string(bits))
                 : "uint" + std::to_string(bits));
  return l;
}

Levels Levels::custom(std::vector<double> values, const std::string& what) {
  TORCH_CHECK_VALUE(values.size() >= 2, "config: ", what, " has ", values.size(),
                    " levels. Violated constraint: at least 2 levels");
  for (size_t i = 0; i < values.size(); ++i) {
    TORCH_CHECK_VALUE(std::isfinite(values[i]), "config: ", what, "[", i, "] = ", values[i],
                      ". Violated constraint: finite");
    TORCH_CHECK_VALUE(i == 0 || values[i] > values[i - 1], "config: ", what, "[", i,
                      "] = ", values[i], " <= ", values[i - 1],
                      ". Violated constraint: levels are strictly increasing");
  }
  Levels l;
  l.thresholds = midpoints(values);
  l.values = std::move(values);
  l.name = "custom";
  return l;
}

Levels Levels::from_json(const json& j, const std::string& what) {
  if (j.is_string()) {
    std::string s = j.get<std::string>();
    if (s == "binary") return binary();
    TORCH_CHECK_VALUE(s == "ternary", "config: ", what, " = \"", s,
                      "\" is not one of: binary, ternary, {\"bits\": b, \"signed\": s, "
                      "\"balanced\": bal}, or an array of levels");
    return ternary();
  }
  if (j.is_array()) {
    std::vector<double> v;
    for (const auto& x : j) {
      TORCH_CHECK_VALUE(x.is_number(), "config: ", what, " holds ", json_type_name(x),
                        ", expected numbers");
      v.push_back(x.get<double>());
    }
    return custom(std::move(v), what);
  }
  TORCH_CHECK_VALUE(j.is_object(), "config: ", what, " has type ", json_type_name(j),
                    ", expected \"binary\", \"ternary\", an object {\"bits\": ...} or an array");
  JsonReader r(j, what);
  int bits = r.required<int>("bits");
  bool is_signed = r.get<bool>("signed", true);
  bool balanced = r.get<bool>("balanced", false);
  r.finish();
  return uniform(bits, is_signed, balanced, what);
}

json Levels::config() const {
  if (name == "binary" || name == "ternary" || name == "custom") {
    if (name != "custom") return name;
    return values;
  }
  const bool is_signed = name.rfind("int", 0) == 0;
  const bool balanced = is_signed && name.back() == 'b';
  const std::string digits =
      name.substr(is_signed ? 3 : 4, name.size() - (is_signed ? 3 : 4) - (balanced ? 1 : 0));
  return {{"bits", std::stoi(digits)}, {"signed", is_signed}, {"balanced", balanced}};
}

Levels Levels::scaled(double eps) const {
  Levels l = *this;
  for (auto& v : l.values) v *= eps;
  for (auto& t : l.thresholds) t *= eps;
  return l;
}

double Levels::max_abs() const {
  double m = 0;
  for (double v : values) m = std::max(m, std::abs(v));
  return m;
}

json Levels::to_json() const {
  return {{"name", name}, {"values", values}, {"thresholds", thresholds}};
}

// ---------------------------------------------------------------------------------------------
// Noise families

NoiseFamily noise_family_from_string(const std::string& s) {
  if (s == "uniform") return NoiseFamily::kUniform;
  if (s == "triangular") return NoiseFamily::kTriangular;
  if (s == "normal") return NoiseFamily::kNormal;
  TORCH_CHECK_VALUE(s == "logistic", "noise family \"", s,
                    "\" is not one of: uniform, triangular, normal, logistic");
  return NoiseFamily::kLogistic;
}

std::string to_string(NoiseFamily f) {
  switch (f) {
    case NoiseFamily::kUniform:
      return "uniform";
    case NoiseFamily::kTriangular:
      return "triangular";
    case NoiseFamily::kNormal:
      return "normal";
    case NoiseFamily::kLogistic:
      return "logistic";
  }
  return "?";
}

std::vector<std::string> noise_families() {
  return {"uniform", "triangular", "normal", "logistic"};
}

double std_to_native(NoiseFamily f) {
  switch (f) {
    case NoiseFamily::kUniform:
      return std::sqrt(3.0);
    case NoiseFamily::kTriangular:
      return std::sqrt(6.0);
    case NoiseFamily::kNormal:
      return 1.0;
    case NoiseFamily::kLogistic:
      return std::sqrt(3.0) / M_PI;
  }
  return 1.0;
}

namespace {

// Each family's CDF is written as F(u) = alpha + beta * g(a u + c) with an in-place
// elementwise g, so that one threshold costs one fused shift (allocation), g and an add:
//   uniform    g = clamp(., 0, 1), a = 1/(2s), c = 1/2,   alpha = 0,   beta = 1
//   normal     g = erf,            a = 1/(s sqrt2), c = 0, alpha = 1/2, beta = 1/2
//   logistic   g = sigmoid,        a = 1/s, c = 0,         alpha = 0,   beta = 1
//   triangular g(z) = z (2 - |z|) on z = clamp(u/s, -1, 1), alpha = 1/2, beta = 1/2
struct CdfForm {
  double a, c, alpha, beta;
};

CdfForm cdf_form(NoiseFamily f, double s) {
  switch (f) {
    case NoiseFamily::kUniform:
      return {0.5 / s, 0.5, 0.0, 1.0};
    case NoiseFamily::kNormal:
      return {M_SQRT1_2 / s, 0.0, 0.5, 0.5};
    case NoiseFamily::kLogistic:
      return {1.0 / s, 0.0, 0.0, 1.0};
    case NoiseFamily::kTriangular:
      return {1.0 / s, 0.0, 0.5, 0.5};
  }
  return {1.0, 0.0, 0.0, 1.0};
}

/// z <- g(z) in place (see CdfForm).
void cdf_g_(NoiseFamily f, torch::Tensor& z) {
  switch (f) {
    case NoiseFamily::kUniform:
      z.clamp_(0.0, 1.0);
      break;
    case NoiseFamily::kNormal:
      z.erf_();
      break;
    case NoiseFamily::kLogistic:
      z.sigmoid_();
      break;
    case NoiseFamily::kTriangular: {
      z.clamp_(-1.0, 1.0);
      z.mul_(z.abs().neg_().add_(2.0));
      break;
    }
  }
}

// Each density as p(u) = k * h(a u + c) with an in-place elementwise h:
//   uniform    h = 1 on [0, 1), i.e. u in [-s, s)   a = 1/(2s), c = 1/2, k = 1/(2s)
//              (noise_pdf; the operator's backward masks the open window, see
//              expected_quantize_vjp: they differ only at the two end points)
//   triangular h(z) = max(0, 1 - |z|)               a = 1/s, c = 0, k = 1/s
//   normal     h(z) = exp(-z^2 / 2)                 a = 1/s, c = 0, k = 1/(s sqrt(2 pi))
//   logistic   h(z) = sigmoid(z) (1 - sigmoid(z))   a = 1/s, c = 0, k = 1/s
struct PdfForm {
  double a, c, k;
};

PdfForm pdf_form(NoiseFamily f, double s) {
  switch (f) {
    case NoiseFamily::kUniform:
      return {0.5 / s, 0.5, 0.5 / s};
    case NoiseFamily::kNormal:
      return {1.0 / s, 0.0, 1.0 / (s * std::sqrt(2.0 * M_PI))};
    case NoiseFamily::kTriangular:
    case NoiseFamily::kLogistic:
      return {1.0 / s, 0.0, 1.0 / s};
  }
  return {1.0, 0.0, 1.0};
}

/// z <- h(z) in place (see PdfForm).
void pdf_h_(NoiseFamily f, torch::Tensor& z) {
  switch (f) {
    case NoiseFamily::kUniform:
      z.floor_().eq_(0.0);
      break;
    case NoiseFamily::kTriangular:
      z.abs_().neg_().add_(1.0).clamp_min_(0.0);
      break;
    case NoiseFamily::kNormal:
      z.square_().mul_(-0.5).exp_();
      break;
    case NoiseFamily::kLogistic: {
      z.sigmoid_();
      z.mul_(z.neg().add_(1.0));
      break;
    }
  }
}

torch::Tensor level_tensor(const std::vector<double>& v, const torch::Tensor& like) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kDouble))
      .to(like.device(), like.scalar_type());
}

/// Equally spaced levels (then thresholds too): binary, ternary, b-bit integers.
bool equally_spaced(const Levels& lv) {
  const auto& q = lv.values;
  const double d = q[1] - q[0];
  for (size_t i = 2; i < q.size(); ++i)
    if (std::abs((q[i] - q[i - 1]) - d) > 1e-12 * std::abs(d)) return false;
  return true;
}

}  // namespace

torch::Tensor noise_cdf(NoiseFamily f, const torch::Tensor& u, double s) {
  TORCH_CHECK(s > 0, "noise_cdf: scale ", s, " must be > 0");
  CdfForm k = cdf_form(f, s);
  torch::Tensor z = u.mul(k.a).add_(k.c);
  cdf_g_(f, z);
  return z.mul_(k.beta).add_(k.alpha);
}

torch::Tensor noise_pdf(NoiseFamily f, const torch::Tensor& u, double s) {
  TORCH_CHECK(s > 0, "noise_pdf: scale ", s, " must be > 0");
  PdfForm k = pdf_form(f, s);
  torch::Tensor z = u.mul(k.a).add_(k.c);
  pdf_h_(f, z);
  return z.mul_(k.k);
}

torch::Tensor sample_noise(NoiseFamily f, const torch::Tensor& like, double s, at::Generator gen) {
  auto opt = torch::TensorOptions().dtype(like.scalar_type()).device(torch::kCPU);
  torch::Tensor n = torch::empty(like.sizes(), opt);
  switch (f) {
    case NoiseFamily::kUniform:
      n.uniform_(-s, s, gen);
      break;
    case NoiseFamily::kTriangular: {
      n.uniform_(0.0, 1.0, gen);
      n.add_(torch::empty(like.sizes(), opt).uniform_(0.0, 1.0, gen)).sub_(1.0).mul_(s);
      break;
    }
    case NoiseFamily::kNormal:
      n.normal_(0.0, s, gen);
      break;
    case NoiseFamily::kLogistic: {
      n.uniform_(0.0, 1.0, gen);
      double e = like.scalar_type() == torch::kDouble ? 1e-15 : 1e-7;
      n.logit_(e).mul_(s);
      break;
    }
  }
  return n.to(like.device());
}

Strategy strategy_from_string(const std::string& s) {
  if (s == "expectation") return Strategy::kExpectation;
  if (s == "mode") return Strategy::kMode;
  TORCH_CHECK_VALUE(s == "random", "strategy \"", s, "\" is not one of: expectation, mode, random");
  return Strategy::kRandom;
}

std::string to_string(Strategy s) {
  switch (s) {
    case Strategy::kExpectation:
      return "expectation";
    case Strategy::kMode:
      return "mode";
    case Strategy::kRandom:
      return "random";
  }
  return "?";
}

std::vector<std::string> strategies() { return {"expectation", "mode", "random"}; }

// ---------------------------------------------------------------------------------------------
// The operator

torch::Tensor hard_quantize(const torch::Tensor& x, const Levels& lv) {
  // Bool tensors (comparisons, masked_fill, where) cost several float passes on the CPU; every
  // path below stays in floating point with in-place ops.
  const auto& q = lv.values;
  const auto& th = lv.thresholds;
  const int64_t K = static_cast<int64_t>(th.size());
  if (equally_spaced(lv)) {
    // index = clamp(floor((x - theta_1) / dtheta) + 1, 0, K), Q = q_0 + index * dq.
    const double dth = K > 1 ? th[1] - th[0] : 1.0;
    // x - theta_1 first: exact near theta_1 (Sterbenz), so only values within rounding of a
    // threshold can land on the other side of it.
    torch::Tensor z = x.sub(th[0]);
    if (dth != 1.0) z.mul_(1.0 / dth);
    z.floor_().add_(1.0).clamp_(0.0, static_cast<double>(K));
    return z.mul_(q[1] - q[0]).add_(q[0]);
  }
  if (K > 8) {
    // right = true: index = #{theta_i <= x}, so x == theta_i goes to the upper level.
    auto idx = torch::bucketize(x, level_tensor(th, x), /*out_int32=*/false, /*right=*/true);
    return level_tensor(q, x).take(idx);
  }
  torch::Tensor out;
  for (int64_t i = 0; i < K; ++i) {
    torch::Tensor h = x.sub(th[i]).ge_(0.0);  // H(x - theta_i), H(0) = 1
    if (!out.defined())
      out = h.mul_(q[1] - q[0]);
    else
      out.add_(h, q[i + 1] - q[i]);
  }
  return out.add_(q[0]);
}

torch::Tensor expected_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s) {
  if (s <= 0) return hard_quantize(x, lv);
  if (f == NoiseFamily::kUniform) {
    // F(x - theta) = (clamp(x, theta - s, theta + s) - (theta - s)) / 2s: one clamp and one
    // accumulation per threshold (the constant parts are summed on the host).
    torch::Tensor out;
    double constant = lv.values[0];
    for (size_t i = 0; i < lv.thresholds.size(); ++i) {
      const double c = (lv.values[i + 1] - lv.values[i]) / (2 * s), lo = lv.thresholds[i] - s;
      constant -= c * lo;
      torch::Tensor z = x.clamp(lo, lv.thresholds[i] + s);
      if (!out.defined())
        out = z.mul_(c);
      else
        out.add_(z, c);
    }
    return out.add_(constant);
  }
  CdfForm k = cdf_form(f, s);
  torch::Tensor xa = x.mul(k.a);
  torch::Tensor out;
  double constant = lv.values[0];
  for (size_t i = 0; i < lv.thresholds.size(); ++i) {
    const double dq = lv.values[i + 1] - lv.values[i];
    constant += dq * k.alpha;
    torch::Tensor z = xa.add(k.c - k.a * lv.thresholds[i]);
    cdf_g_(f, z);
    if (!out.defined())
      out = z.mul_(dq * k.beta);
    else
      out.add_(z, dq * k.beta);
  }
  return out.add_(constant);
}

torch::Tensor expected_quantize_vjp(const torch::Tensor& grad, const torch::Tensor& x,
                                    const Levels& lv, NoiseFamily f, double s) {
  if (s <= 0) return torch::zeros_like(x);
  const auto& th = lv.thresholds;
  const auto& q = lv.values;
  if (f == NoiseFamily::kUniform) {
    // dq / 2s on (theta - s, theta + s): hardtanh's fused backward masks the gradient in one
    // pass per window. Equally spaced thresholds with 2s = spacing tile [theta_1 - s,
    // theta_K + s] with equal heights: a single window (the clipped STE).
    const double c = (q[1] - q[0]) / (2 * s);
    if (equally_spaced(lv) && (th.size() == 1 || std::abs(2 * s - (th[1] - th[0])) <= 1e-12 * s))
      return at::hardtanh_backward(grad, x, th.front() - s, th.back() + s).mul_(c);
    torch::Tensor out;
    for (size_t i = 0; i < th.size(); ++i) {
      const double ci = (q[i + 1] - q[i]) / (2 * s);
      torch::Tensor g = at::hardtanh_backward(grad, x, th[i] - s, th[i] + s);
      if (!out.defined())
        out = g.mul_(ci);
      else
        out.add_(g, ci);
    }
    return out;
  }
  PdfForm k = pdf_form(f, s);
  torch::Tensor xa = x.mul(k.a);
  torch::Tensor out;
  if (f == NoiseFamily::kLogistic) {
    // p = F (1 - F) / s with F = sigmoid: sigmoid's fused backward gives grad * F (1 - F).
    for (size_t i = 0; i < th.size(); ++i) {
      torch::Tensor z = xa.add(-k.a * th[i]).sigmoid_();
      torch::Tensor g = at::sigmoid_backward(grad, z);
      const double c = (q[i + 1] - q[i]) * k.k;
      if (!out.defined())
        out = g.mul_(c);
      else
        out.add_(g, c);
    }
    return out;
  }
  for (size_t i = 0; i < th.size(); ++i) {
    const double dq = q[i + 1] - q[i];
    torch::Tensor z = xa.add(k.c - k.a * th[i]);
    pdf_h_(f, z);
    if (!out.defined())
      out = z.mul_(dq * k.k);
    else
      out.add_(z, dq * k.k);
  }
  return out.mul_(grad);
}

torch::Tensor expected_quantize_grad(const torch::Tensor& x, const Levels& lv, NoiseFamily f,
                                     double s) {
  return expected_quantize_vjp(torch::ones_like(x), x, lv, f, s);
}

torch::Tensor level_pmf(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s) {
  TORCH_CHECK(s > 0, "level_pmf: scale ", s, " must be > 0");
  // G_j = P(x + nu >= theta_j) = F(x - theta_j); G_0 = 1, G_{K+1} = 0; pmf_j = G_j - G_{j+1}.
  std::vector<torch::Tensor> g{torch::ones_like(x)};
  for (double th : lv.thresholds) g.push_back(noise_cdf(f, x - th, s));
  g.push_back(torch::zeros_like(x));
  auto G = torch::stack(g);
  const int64_t n = G.size(0);
  return G.slice(0, 0, n - 1) - G.slice(0, 1, n);
}

torch::Tensor mode_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s) {
  if (s <= 0) return hard_quantize(x, lv);
  // Running argmax over levels of pmf_j = G_j - G_{j+1} (G_0 = 1, G_{K+1} = 0), in float
  // (0/1 masks from in-place comparisons). A level wins only when strictly more likely, so
  // ties go to the lower level; the winning index only grows with j, so idx = max(idx, j * win).
  const size_t K = lv.thresholds.size();
  torch::Tensor g_prev, best, idx;
  for (size_t j = 0; j <= K; ++j) {
    torch::Tensor g_next = j < K ? noise_cdf(f, x - lv.thresholds[j], s) : torch::Tensor();
    torch::Tensor pmf = j == 0 ? 1.0 - g_next : j < K ? g_prev - g_next : g_prev;
    if (j == 0) {
      best = pmf;
      idx = torch::zeros_like(x);
    } else {
      torch::Tensor win = (pmf - best).gt_(0.0).mul_(static_cast<double>(j));
      idx = torch::maximum(idx, win);
      best = torch::maximum(best, pmf);
    }
    g_prev = g_next;
  }
  if (equally_spaced(lv)) return idx.mul_(lv.values[1] - lv.values[0]).add_(lv.values[0]);
  return level_tensor(lv.values, x).take(idx.to(torch::kLong));
}

torch::Tensor random_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s,
                              at::Generator gen) {
  if (s <= 0) return hard_quantize(x, lv);
  return hard_quantize(x + sample_noise(f, x, s, std::move(gen)), lv);
}

namespace {

class AnaFunction : public torch::autograd::Function<AnaFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const QuantOp& op) {
    ctx->save_for_backward({x});
    ctx->saved_data["levels"] = op.levels->values;
    ctx->saved_data["thresholds"] = op.levels->thresholds;
    ctx->saved_data["family"] = static_cast<int64_t>(op.backward_noise);
    ctx->saved_data["scale"] = op.backward_scale;
    const Levels& lv = *op.levels;
    const double s = op.forward_scale;
    switch (op.strategy) {
      case Strategy::kExpectation:
        return expected_quantize(x, lv, op.forward_noise, s);
      case Strategy::kMode:
        return mode_quantize(x, lv, op.forward_noise, s);
      case Strategy::kRandom:
        return random_quantize(x, lv, op.forward_noise, s, op.gen);
    }
    return x;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto x = ctx->get_saved_variables()[0];
    Levels lv;
    lv.values = ctx->saved_data["levels"].toDoubleVector();
    lv.thresholds = ctx->saved_data["thresholds"].toDoubleVector();
    auto f = static_cast<NoiseFamily>(ctx->saved_data["family"].toInt());
    double s = ctx->saved_data["scale"].toDouble();
    return {expected_quantize_vjp(grad[0], x, lv, f, s), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor ana_quantize(const torch::Tensor& x, const QuantOp& op) {
  TORCH_CHECK(op.levels != nullptr, "ana_quantize: no levels");
  TORCH_CHECK(op.forward_scale >= 0 && op.backward_scale >= 0, "ana_quantize: negative scale");
  TORCH_CHECK(op.strategy != Strategy::kRandom || op.forward_scale == 0 || op.gen.defined(),
              "ana_quantize: the random strategy needs a generator");
  return AnaFunction::apply(x, op);
}

}  // namespace qsched::inner::ana
