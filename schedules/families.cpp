#include "schedules/families.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "schedules/registry.h"

namespace qsched::sched {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

ParamSpec num(std::string name, json def, double lo, double hi, std::string doc,
              bool lo_open = false, Applies applies = Applies::kBoth) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = ParamType::kNumber;
  p.def = std::move(def);
  p.lo = lo;
  p.hi = hi;
  p.lo_open = lo_open;
  p.applies = applies;
  p.doc = std::move(doc);
  return p;
}

/// Parameters every windowed family has (window, layout, depth exponent, scale).
std::vector<ParamSpec> common_params() {
  ParamSpec layout;
  layout.name = "layout";
  layout.type = ParamType::kString;
  layout.def = "overlapped";
  layout.choices = {"overlapped", "stagger", "same_start", "same_end", "sequential"};
  layout.doc = "per-layer windows (see schedules/families.h)";
  return {
      num("start", 0, 0, kInf, "first epoch a of the windows (quantization epochs)"),
      num("end", -1, -kInf, kInf, "last epoch b of the windows; negative: T + end (-1 = T - 1)"),
      layout,
      num("delta", 1, -kInf, kInf, "stagger: start_l = start + l * delta epochs (< 0: top first)"),
      num("depth_exponent", 0, 0, 100,
          "p_l = 1 + depth_exponent (1 - l/(L-1)): r' = 1 - (1 - r)^p_l, lower layers faster"),
      num("initial", 0, 0, 1, "INQ: fraction before and at the start of the window", false,
          Applies::kFraction),
      num("sigma0", 0.5, 0, kInf, "ANA: noise before and at the start of the window", false,
          Applies::kNoise),
  };
}

struct Curve {
  std::string name, doc;
  std::vector<ParamSpec> params;
};

std::vector<Curve> curves() {
  ParamSpec steps;
  steps.name = "steps";
  steps.type = ParamType::kInt;
  steps.def = 3;
  steps.lo = 1;
  steps.hi = 1000;
  steps.doc = "K: steps at r = k/K, k = 1..K-1, plus the final one at r = 1";
  return {
      {"linear", "g = r: linear ramp", {}},
      {"cosine", "g = (1 - cos(pi r)) / 2: cosine annealing (SGDR shape)", {}},
      {"logistic",
       "g = normalized S(k (r - c)): sigmoid ramp with center c, steepness k",
       {num("center", 0.5, 0, 1, "c: r at the steepest point"),
        num("steepness", 10, 0.01, 1000, "k")}},
      {"power",
       "g = 1 - (1 - r)^alpha: bounded-window power law (QuantLab bws, arXiv 2203.11323)",
       {num("alpha", 1, 0, 100, "alpha (> 0); noise = sigma0 (1 - r)^alpha", true)}},
      {"exponential",
       "g = (1 - e^(-k r)) / (1 - e^(-k)): exponential decay of the remainder",
       {num("rate", 4, 0, 100, "k (> 0)", true)}},
      {"geometric",
       "g = 1 - (1 - q)^floor(K r): take q of what remains at K equally spaced epochs (INQ)",
       {num("ratio", 0.5, 0, 1, "q: share of the remainder taken at each step (0 < q < 1)", true),
        steps}},
  };
}

}  // namespace

const std::vector<std::string>& windowed_family_names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& c : curves()) v.push_back(c.name);
    return v;
  }();
  return n;
}

void register_windowed_families(Registry& r) {
  for (auto& c : curves()) {
    FamilyEntry e;
    e.name = c.name;
    e.quantity = Applies::kBoth;
    e.doc = c.doc + "; INQ f = initial + (1 - initial) g, ANA sigma = sigma0 (1 - g)";
    e.params = c.params;
    for (auto& p : common_params()) e.params.push_back(p);
    std::string name = c.name;
    e.make = [name](const json&, const json& resolved, Quantity q, const std::string& what) {
      return std::make_unique<WindowedSchedule>(name, resolved, q, what);
    };
    r.add(std::move(e));
  }
}

WindowedSchedule::WindowedSchedule(std::string family, json resolved, Quantity q, std::string what)
    : family_(std::move(family)), spec_(std::move(resolved)), q_(q), what_(std::move(what)) {
  auto d = [&](const char* k, double def) {
    return spec_.contains(k) ? spec_[k].get<double>() : def;
  };
  layout_ = spec_.at("layout").get<std::string>();
  start_ = d("start", 0);
  end_ = d("end", -1);
  delta_ = d("delta", 1);
  depth_exponent_ = d("depth_exponent", 0);
  initial_ = d("initial", 0);
  sigma0_ = d("sigma0", 0.5);
  alpha_ = d("alpha", 1);
  rate_ = d("rate", 4);
  center_ = d("center", 0.5);
  steepness_ = d("steepness", 10);
  ratio_ = d("ratio", 0.5);
  steps_ = spec_.contains("steps") ? spec_["steps"].get<int64_t>() : 3;
  TORCH_CHECK_VALUE(ratio_ < 1.0, what_, ".ratio = ", ratio_,
                    ". Violated constraint: 0 < ratio < 1");
}

std::pair<double, double> WindowedSchedule::window(int64_t l, int64_t T, int64_t L) const {
  const double a = start_, b = end_ < 0 ? static_cast<double>(T) + end_ : end_;
  TORCH_CHECK_VALUE(b <= static_cast<double>(T - 1), what_, ": the windows end at epoch ", b,
                    " but the run has ", T, " quantization epochs (0..", T - 1, "). Violated ",
                    "constraint: every layer is done by the last epoch");
  TORCH_CHECK_VALUE(a <= b, what_, ".start = ", a, " is after the end of the windows (", b, ")");
  const double dl = static_cast<double>(l), n = static_cast<double>(L);
  if (layout_ == "stagger") {
    const double ad = std::abs(delta_);
    const double w = b - a - (n - 1) * ad;
    TORCH_CHECK_VALUE(w >= 0, what_, ".delta = ", delta_, ": ", L, " layers staggered by ", ad,
                      " epochs need ", (n - 1) * ad, " epochs but the window [", a, ", ", b,
                      "] has ", b - a, ". Violated constraint: (L - 1) |delta| <= end - start");
    const double s = a + (delta_ >= 0 ? dl : n - 1 - dl) * ad;
    return {s, s + w};
  }
  const double w = (b - a) / n;
  if (layout_ == "same_start") return {a, l + 1 == L ? b : a + (dl + 1) * w};
  if (layout_ == "same_end") return {a + dl * w, b};
  if (layout_ == "sequential") return {a + dl * w, l + 1 == L ? b : a + (dl + 1) * w};
  return {a, b};  // overlapped
}

double WindowedSchedule::curve(double r) const {
  r = std::clamp(r, 0.0, 1.0);
  if (r >= 1.0) return 1.0;
  if (family_ == "linear") return r;
  if (family_ == "cosine") return 0.5 * (1.0 - std::cos(M_PI * r));
  if (family_ == "logistic") {
    const double lo = sigmoid(-steepness_ * center_), hi = sigmoid(steepness_ * (1 - center_));
    return (sigmoid(steepness_ * (r - center_)) - lo) / (hi - lo);
  }
  if (family_ == "power") return 1.0 - std::pow(1.0 - r, alpha_);
  if (family_ == "exponential") return -std::expm1(-rate_ * r) / -std::expm1(-rate_);
  if (family_ == "geometric") {
    // 1e-9 guards floor() against r = k/K landing just below k/K in floating point.
    const double k = std::floor(static_cast<double>(steps_) * r + 1e-9);
    return 1.0 - std::pow(1.0 - ratio_, k);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown windowed family ", family_);
}

std::vector<double> WindowedSchedule::values(const ScheduleContext& ctx) {
  const int64_t T = ctx.total_epochs, L = ctx.num_layers;
  const double t = static_cast<double>(ctx.epoch);
  std::vector<double> v(L);
  for (int64_t l = 0; l < L; ++l) {
    auto [s, e] = window(l, T, L);
    double r = e <= s ? (t >= e ? 1.0 : 0.0) : (std::clamp(t, s, e) - s) / (e - s);
    const double d = L == 1 ? 0.0 : static_cast<double>(l) / static_cast<double>(L - 1);
    const double p = 1.0 + depth_exponent_ * (1.0 - d);
    const double rp = r >= 1.0 ? 1.0 : 1.0 - std::pow(1.0 - r, p);
    const double g = std::clamp(curve(rp), 0.0, 1.0);
    if (q_ == Quantity::kFraction)
      v[l] = r >= 1.0 ? 1.0 : std::min(1.0, initial_ + (1.0 - initial_) * g);
    else
      v[l] = r >= 1.0 ? 0.0 : std::max(0.0, sigma0_ * (1.0 - g));
  }
  return v;
}

}  // namespace qsched::sched
