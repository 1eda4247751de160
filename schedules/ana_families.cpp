#include "schedules/ana_families.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace qsched::sched {

namespace {

const std::vector<std::string> kShapes = {"power", "linear", "cosine", "exponential"};
const std::vector<std::string> kLayouts = {"sequential", "same_start", "same_end", "overlapped",
                                           "progressive"};
const std::vector<std::string> kExponents = {"homogeneous", "progressive"};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool one_of(const std::string& s, const std::vector<std::string>& v) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

/// Strict typed reads of a spec object.
class SpecReader {
 public:
  SpecReader(const json& j, std::string what) : j_(j), what_(std::move(what)) {}
  template <class T>
  T get(const std::string& key, const T& def) {
    known_.insert(key);
    if (!j_.contains(key)) return def;
    const json& v = j_.at(key);
    bool ok;
    if constexpr (std::is_integral_v<T>)
      ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<T>)
      ok = v.is_number();
    else
      ok = v.is_string();
    TORCH_CHECK_VALUE(ok, what_, ".", key, " has type ", v.type_name(), ", expected ",
                      std::is_integral_v<T>         ? "integer"
                      : std::is_floating_point_v<T> ? "number"
                                                    : "string");
    return v.get<T>();
  }
  bool has(const std::string& key) const { return j_.contains(key); }
  void finish() {
    known_.insert("family");
    std::string list;
    for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
    for (auto it = j_.begin(); it != j_.end(); ++it)
      TORCH_CHECK_VALUE(known_.count(it.key()), what_, ": unknown key '", it.key(),
                        "' (valid keys: ", list, ")");
  }

 private:
  const json& j_;
  std::string what_;
  std::set<std::string> known_;
};

}  // namespace

void AnaWindowOptions::validate(const std::string& what) const {
  auto fail = [&](const std::string& key, const auto& value, const std::string& rule) {
    std::ostringstream v;
    v << value;
    TORCH_CHECK_VALUE(false, what, ".", key, " = ", v.str(), ". Violated constraint: ", rule);
  };
  if (!(std::isfinite(sigma0) && sigma0 >= 0)) fail("sigma0", sigma0, "sigma0 >= 0");
  if (!one_of(shape, kShapes)) fail("shape", "\"" + shape + "\"", "one of " + join(kShapes));
  if (!(std::isfinite(alpha) && alpha > 0)) fail("alpha", alpha, "alpha > 0");
  if (!(std::isfinite(rate) && rate > 0)) fail("rate", rate, "rate > 0");
  if (!one_of(layout, kLayouts)) fail("layout", "\"" + layout + "\"", "one of " + join(kLayouts));
  if (!one_of(exponents, kExponents))
    fail("exponents", "\"" + exponents + "\"", "one of " + join(kExponents));
  if (start < 0) fail("start", start, "start >= 0");
  if (!(std::isfinite(window) && window >= 0)) fail("window", window, "window > 0");
  bool progressive = exponents == "progressive" || layout == "progressive";
  if (progressive && shape != "power")
    fail("shape", "\"" + shape + "\"", "progressive exponents need shape \"power\"");
}

AnaWindowOptions AnaWindowOptions::from_json(const json& spec, const std::string& what) {
  TORCH_CHECK_VALUE(spec.is_object(), what, " must be an object");
  SpecReader r(spec, what);
  AnaWindowOptions o;
  o.sigma0 = r.get<double>("sigma0", o.sigma0);
  o.shape = r.get<std::string>("shape", o.shape);
  o.alpha = r.get<double>("alpha", o.alpha);
  o.rate = r.get<double>("rate", o.rate);
  o.layout = r.get<std::string>("layout", o.layout);
  o.exponents = r.get<std::string>("exponents", o.exponents);
  o.start = r.get<int64_t>("start", o.start);
  o.end = r.get<int64_t>("end", o.end);
  o.window = r.get<double>("window", o.window);
  r.finish();
  TORCH_CHECK_VALUE(!(spec.contains("window") && spec.contains("end")), what,
                    ": give either 'window' (epochs per layer) or 'end' (last epoch), not both");
  TORCH_CHECK_VALUE(!spec.contains("window") || o.window > 0, what, ".window = ", o.window,
                    ". Violated constraint: window > 0");
  TORCH_CHECK_VALUE(!spec.contains("alpha") || o.shape == "power", what,
                    ".alpha only applies to shape \"power\" (shape is \"", o.shape, "\")");
  TORCH_CHECK_VALUE(!spec.contains("rate") || o.shape == "exponential", what,
                    ".rate only applies to shape \"exponential\" (shape is \"", o.shape, "\")");
  o.validate(what);
  return o;
}

json AnaWindowOptions::to_json() const {
  json j = {{"family", "ana_window"}, {"sigma0", sigma0},       {"shape", shape},
            {"layout", layout},       {"exponents", exponents}, {"start", start}};
  if (shape == "power") j["alpha"] = alpha;
  if (shape == "exponential") j["rate"] = rate;
  if (window > 0)
    j["window"] = window;
  else
    j["end"] = end;
  return j;
}

AnaWindowSchedule::AnaWindowSchedule(AnaWindowOptions o, std::string what)
    : o_(std::move(o)), what_(std::move(what)) {
  o_.validate(what_);
}

std::pair<double, double> AnaWindowSchedule::window(int64_t l, int64_t T, int64_t L) const {
  const double a = static_cast<double>(o_.start);
  double b, w;
  if (o_.window > 0) {
    w = o_.window;
    b = a + static_cast<double>(L) * w;
  } else {
    b = static_cast<double>(o_.end < 0 ? T + o_.end : o_.end);
    w = (b - a) / static_cast<double>(L);
  }
  TORCH_CHECK_VALUE(b <= static_cast<double>(T - 1), what_, ": the last window ends at epoch ", b,
                    " but the run has ", T, " quantization epochs (0..", T - 1,
                    "). Violated constraint: noise reaches 0 by the last epoch");
  TORCH_CHECK_VALUE(a <= b, what_, ".start = ", o_.start, " is after the end of the windows (", b,
                    ")");
  const double dl = static_cast<double>(l);
  if (o_.layout == "sequential") return {a + dl * w, a + (dl + 1) * w};
  if (o_.layout == "same_start") return {a, a + (dl + 1) * w};
  if (o_.layout == "same_end") return {a + dl * w, b};
  return {a, b};  // overlapped, progressive
}

double AnaWindowSchedule::exponent(int64_t l, int64_t L) const {
  bool progressive = o_.exponents == "progressive" || o_.layout == "progressive";
  return progressive ? o_.alpha * static_cast<double>(L - l) : o_.alpha;
}

double AnaWindowSchedule::shape(double r, int64_t l, int64_t L) const {
  r = std::clamp(r, 0.0, 1.0);
  if (o_.shape == "linear") return 1.0 - r;
  if (o_.shape == "cosine") return r >= 1.0 ? 0.0 : 0.5 * (1.0 + std::cos(M_PI * r));
  if (o_.shape == "exponential") {
    const double k = o_.rate;
    return r >= 1.0 ? 0.0 : (std::exp(-k * r) - std::exp(-k)) / (1.0 - std::exp(-k));
  }
  return std::pow(1.0 - r, exponent(l, L));
}

std::vector<double> AnaWindowSchedule::values(const ScheduleContext& ctx) {
  const int64_t T = ctx.total_epochs, L = ctx.num_layers;
  std::vector<double> v(L);
  const double t = static_cast<double>(ctx.epoch);
  for (int64_t l = 0; l < L; ++l) {
    auto [s, e] = window(l, T, L);
    double r = e <= s ? (t >= e ? 1.0 : 0.0) : (std::clamp(t, s, e) - s) / (e - s);
    double f = shape(r, l, L);
    v[l] = o_.sigma0 * std::max(0.0, f);
    if (r >= 1.0) v[l] = 0.0;  // exactly 0 once the window has closed
  }
  return v;
}

json AnaWindowSchedule::describe() const { return o_.to_json(); }

std::vector<std::string> ana_schedule_families() { return {"ana_window"}; }

std::unique_ptr<Schedule> make_ana_schedule(const json& spec, const std::string& what) {
  std::string family = spec.at("family").get<std::string>();
  TORCH_CHECK_VALUE(family == "ana_window", what, ".family = \"", family,
                    "\" is not an ANA family (", join(ana_schedule_families()), ")");
  return std::make_unique<AnaWindowSchedule>(AnaWindowOptions::from_json(spec, what), what);
}

}  // namespace qsched::sched
