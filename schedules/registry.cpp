#include "schedules/registry.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "inner/base/json_text.h"
#include "schedules/ana_families.h"
#include "schedules/families.h"

namespace qsched::sched {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return v.type_name();
}

}  // namespace

std::string to_string(ParamType t) {
  switch (t) {
    case ParamType::kInt:
      return "integer";
    case ParamType::kNumber:
      return "number";
    case ParamType::kString:
      return "string";
    case ParamType::kNumberList:
      return "number list";
    default:
      return "JSON";
  }
}

std::string to_string(Applies a) {
  return a == Applies::kFraction ? "fraction" : a == Applies::kNoise ? "noise" : "both";
}

bool applies_to(Applies a, Quantity q) {
  return a == Applies::kBoth || (a == Applies::kFraction) == (q == Quantity::kFraction);
}

std::string ParamSpec::rule() const {
  if (type == ParamType::kJson) return "checked by the family";
  if (type == ParamType::kString)
    return choices.empty() ? "any string" : name + " in {" + join(choices) + "}";
  std::string x = type == ParamType::kNumberList ? "every " + name + "[i]" : name;
  bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi)
    return num(lo) + (lo_open ? " < " : " <= ") + x + (hi_open ? " < " : " <= ") + num(hi);
  if (has_lo) return x + (lo_open ? " > " : " >= ") + num(lo);
  if (has_hi) return x + (hi_open ? " < " : " <= ") + num(hi);
  return "finite";
}

void ParamSpec::check(const json& v, const std::string& what) const {
  auto in_range = [&](double x) {
    return std::isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  };
  auto bad_type = [&](const std::string& expected) {
    TORCH_CHECK_VALUE(false, what, ".", name, " has type ", type_name(v), ", expected ", expected);
  };
  switch (type) {
    case ParamType::kInt:
      if (!v.is_number_integer()) bad_type("integer");
      TORCH_CHECK_VALUE(in_range(static_cast<double>(v.get<int64_t>())), what, ".", name, " = ",
                        v.dump(), ". Violated constraint: ", rule());
      break;
    case ParamType::kNumber:
      if (!v.is_number()) bad_type("number");
      TORCH_CHECK_VALUE(in_range(v.get<double>()), what, ".", name, " = ", v.dump(),
                        ". Violated constraint: ", rule());
      break;
    case ParamType::kString:
      if (!v.is_string()) bad_type("string");
      TORCH_CHECK_VALUE(choices.empty() || std::find(choices.begin(), choices.end(),
                                                     v.get<std::string>()) != choices.end(),
                        what, ".", name, " = ", v.dump(), " is not one of: ", join(choices));
      break;
    case ParamType::kNumberList:
      if (!v.is_array()) bad_type("array of numbers");
      for (size_t i = 0; i < v.size(); ++i) {
        TORCH_CHECK_VALUE(v[i].is_number(), what, ".", name, "[", i, "] has type ", type_name(v[i]),
                          ", expected number");
        TORCH_CHECK_VALUE(in_range(v[i].get<double>()), what, ".", name, "[", i,
                          "] = ", v[i].dump(), ". Violated constraint: ", rule());
      }
      break;
    case ParamType::kJson:
      break;
  }
}

const ParamSpec* FamilyEntry::param(const std::string& key) const {
  for (const auto& p : params)
    if (p.name == key) return &p;
  return nullptr;
}

void Registry::add(FamilyEntry e) {
  for (const auto& x : entries_)
    TORCH_INTERNAL_ASSERT(x.name != e.name, "schedule family registered twice: ", e.name);
  entries_.push_back(std::move(e));
}

std::vector<std::string> Registry::registered_names() const {
  std::vector<std::string> n;
  for (const auto& e : entries_) n.push_back(e.name);
  std::sort(n.begin(), n.end());
  return n;
}

const FamilyEntry& Registry::entry(const std::string& name, const std::string& what) const {
  for (const auto& e : entries_)
    if (e.name == name) return e;
  TORCH_CHECK_VALUE(false, what, ".family = \"", name,
                    "\" is not one of: ", join(registered_names()));
}

namespace {

/// Checks keys, types, ranges and quantities; returns the given keys without "family".
json check_params(const FamilyEntry& e, const json& params, Quantity q, const std::string& what) {
  TORCH_CHECK_VALUE(params.is_object(), what, " must be a JSON object");
  TORCH_CHECK_VALUE(
      applies_to(e.quantity, q), what, " gives ",
      to_string(e.quantity == Applies::kNoise ? Quantity::kNoise : Quantity::kFraction),
      " values but this algorithm needs ", to_string(q), " values");
  json given = json::object();
  std::vector<std::string> valid = {"family"};
  for (const auto& p : e.params) valid.push_back(p.name);
  std::sort(valid.begin(), valid.end());
  for (auto it = params.begin(); it != params.end(); ++it) {
    if (it.key() == "family") {
      TORCH_CHECK_VALUE(it.value() == json(e.name), what, ".family does not match \"", e.name,
                        "\"");
      continue;
    }
    const ParamSpec* p = e.param(it.key());
    TORCH_CHECK_VALUE(p, what, ": unknown key '", it.key(), "' (valid keys: ", join(valid), ")");
    TORCH_CHECK_VALUE(applies_to(p->applies, q), what, ".", p->name, " applies only to ",
                      to_string(p->applies), " schedules, this one gives ", to_string(q),
                      " values");
    p->check(it.value(), what);
    given[it.key()] = it.value();
  }
  return given;
}

}  // namespace

json Registry::resolve(const std::string& name, const json& params, Quantity q,
                       const std::string& what) const {
  const FamilyEntry& e = entry(name, what);
  json r = check_params(e, params, q, what);
  for (const auto& p : e.params)
    if (!r.contains(p.name) && !p.def.is_null() && applies_to(p.applies, q)) r[p.name] = p.def;
  r["family"] = name;
  return r;
}

std::unique_ptr<Schedule> Registry::create(const std::string& name, const json& params, Quantity q,
                                           const std::string& what) const {
  const FamilyEntry& e = entry(name, what);
  json given = check_params(e, params, q, what);
  json resolved = resolve(name, params, q, what);
  auto s = e.make(given, resolved, q, what);
  TORCH_INTERNAL_ASSERT(s && s->quantity() == q, "family ", name, " built the wrong quantity");
  return s;
}

namespace {

json read_json(const std::string& path, const std::string& what) {
  try {
    return read_json_file(path);
  } catch (const c10::ValueError& e) {
    TORCH_CHECK_VALUE(false, what, ": ", e.what_without_backtrace());
  }
}

ParamSpec param(std::string name, ParamType t, json def, std::string doc) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = t;
  p.def = std::move(def);
  p.doc = std::move(doc);
  return p;
}

ParamSpec ranged(ParamSpec p, double lo, double hi, bool lo_open = false, bool hi_open = false) {
  p.lo = lo;
  p.hi = hi;
  p.lo_open = lo_open;
  p.hi_open = hi_open;
  return p;
}

void register_steps(Registry& r) {
  const double inf = std::numeric_limits<double>::infinity();
  auto eps = ranged(param("epochs_per_step", ParamType::kInt, 1,
                          "epochs of each step: f(t) = portions[min(t / epochs_per_step, K - 1)]"),
                    1, inf);
  FamilyEntry paper;
  paper.name = "inq_paper";
  paper.quantity = Applies::kFraction;
  paper.doc =
      "the INQ paper's accumulated portions for 2-5 bits, same for every layer (Zhou et al. "
      "2017, Sec. 3)";
  paper.params = {ranged(param("bits", ParamType::kInt, 5,
                               "5: {.5,.75,.875,1}; 4: {.3,.5,.8,.9,.95,1}; 3: {.2,.4,.6,.8,.9,"
                               ".95,1}; 2: {.2,.4,.6,.7,.8,.85,.9,.95,.975,1}"),
                         2, 5),
                  eps};
  paper.make = [](const json&, const json& p, Quantity, const std::string&) {
    return std::make_unique<StepListSchedule>(inq_paper_portions(p["bits"].get<int>()),
                                              p["epochs_per_step"].get<int64_t>());
  };
  r.add(paper);

  FamilyEntry steps;
  steps.name = "steps";
  steps.quantity = Applies::kFraction;
  steps.doc = "your accumulated portions (non-decreasing, ending with 1), same for every layer";
  steps.params = {ranged(param("portions", ParamType::kNumberList, json(),
                               "accumulated portions, non-decreasing, last = 1 (required)"),
                         0, 1),
                  eps};
  steps.make = [](const json& given, const json& p, Quantity, const std::string& what) {
    TORCH_CHECK_VALUE(given.contains("portions"), what, ": missing key 'portions'");
    return std::make_unique<StepListSchedule>(p["portions"].get<std::vector<double>>(),
                                              p["epochs_per_step"].get<int64_t>());
  };
  r.add(steps);
}

void register_tables(Registry& r) {
  FamilyEntry table;
  table.name = "table";
  table.quantity = Applies::kBoth;
  table.parametric = false;
  table.doc = "an explicit per-layer table: values[t][l], replayed exactly";
  auto q = param("quantity", ParamType::kString, json(), "fraction | noise (required)");
  q.choices = {"fraction", "noise"};
  auto e = ranged(param("epochs", ParamType::kInt, json(), "T, must match values (optional)"), 1,
                  std::numeric_limits<double>::infinity());
  auto l = ranged(param("layers", ParamType::kInt, json(), "L, must match values (optional)"), 1,
                  std::numeric_limits<double>::infinity());
  ParamSpec v;
  v.name = "values";
  v.type = ParamType::kJson;  // checked as a table by ScheduleTable::from_json
  v.doc = "T rows of L numbers (required)";
  table.params = {q, e, l, v};
  table.make = [](const json& given, const json&, Quantity want, const std::string& what) {
    auto t = ScheduleTable::from_json(given, what);
    TORCH_CHECK_VALUE(t.quantity == want, what, " gives ", to_string(t.quantity),
                      " values but this algorithm needs ", to_string(want), " values");
    return std::make_unique<TableSchedule>(std::move(t));
  };
  r.add(table);

  FamilyEntry file;
  file.name = "file";
  file.quantity = Applies::kBoth;
  file.parametric = false;
  file.doc = "replays a recorded schedule.json (ScheduleTable JSON) bit-identically";
  file.params = {param("path", ParamType::kString, json(), "path of the schedule.json (required)")};
  file.make = [](const json& given, const json&, Quantity want, const std::string& what) {
    TORCH_CHECK_VALUE(given.contains("path"), what, ": missing string key 'path'");
    std::string path = given["path"].get<std::string>();
    auto t = ScheduleTable::from_json(read_json(path, what), path);
    TORCH_CHECK_VALUE(t.quantity == want, what, " gives ", to_string(t.quantity),
                      " values but this algorithm needs ", to_string(want), " values");
    return std::make_unique<TableSchedule>(std::move(t));
  };
  r.add(file);
}

void register_ana_window(Registry& r) {
  const double inf = std::numeric_limits<double>::infinity();
  FamilyEntry e;
  e.name = "ana_window";
  e.quantity = Applies::kNoise;
  e.doc =
      "ANA bounded windows: sigma0 f(r) per layer window, layouts and progressive exponents "
      "(Spallanzani et al. 2019, 2022); see schedules/ana_families.h";
  AnaWindowOptions d;
  auto shape =
      param("shape", ParamType::kString, d.shape, "f: power | linear | cosine | exponential");
  shape.choices = {"power", "linear", "cosine", "exponential"};
  auto layout = param("layout", ParamType::kString, d.layout, "per-layer windows");
  layout.choices = {"sequential", "same_start", "same_end", "overlapped", "progressive"};
  auto expo = param("exponents", ParamType::kString, d.exponents,
                    "progressive: alpha_l = alpha (L - l) (shape power only)");
  expo.choices = {"homogeneous", "progressive"};
  e.params = {
      ranged(param("sigma0", ParamType::kNumber, d.sigma0, "noise at the start of every window"), 0,
             inf),
      shape,
      ranged(param("alpha", ParamType::kNumber, d.alpha, "power: exponent"), 0, inf, true),
      ranged(param("rate", ParamType::kNumber, d.rate, "exponential: rate k"), 0, inf, true),
      layout,
      expo,
      ranged(param("start", ParamType::kInt, d.start, "first epoch of the first window"), 0, inf),
      param("end", ParamType::kInt, json(),
            "last epoch of the last window, negative counts from the end (default -1)"),
      ranged(param("window", ParamType::kNumber, json(),
                   "epochs per layer window (exclusive with end)"),
             0, inf)};
  // ana_window checks relations between its keys itself (alpha only with shape power, ...),
  // so it reads the keys the user gave, not the resolved defaults.
  e.make = [](const json& given, const json&, Quantity, const std::string& what) {
    json spec = given;
    spec["family"] = "ana_window";
    return make_ana_schedule(spec, what);
  };
  r.add(e);
}

}  // namespace

void register_builtin_families(Registry& r) {
  register_steps(r);
  register_tables(r);
  register_ana_window(r);
  register_windowed_families(r);
}

const Registry& registry() {
  static const Registry r = [] {
    Registry x;
    register_builtin_families(x);
    return x;
  }();
  return r;
}

}  // namespace qsched::sched
