#include "schedules/factory.h"

#include <algorithm>
#include <fstream>
#include <set>

#include "schedules/ana_families.h"

namespace qsched::sched {

namespace {

/// Rejects keys outside `valid` (plus "family"), listing the valid ones.
void check_keys(const json& spec, std::set<std::string> valid, const std::string& what) {
  valid.insert("family");
  std::string list;
  for (const auto& k : valid) list += (list.empty() ? "" : ", ") + k;
  for (auto it = spec.begin(); it != spec.end(); ++it)
    TORCH_CHECK_VALUE(valid.count(it.key()), what, ": unknown key '", it.key(),
                      "' (valid keys: ", list, ")");
}

template <class T>
T get(const json& spec, const std::string& key, const T& def, const std::string& what) {
  if (!spec.contains(key)) return def;
  try {
    return spec.at(key).get<T>();
  } catch (const json::exception&) {
    TORCH_CHECK_VALUE(false, what, ".", key, " has the wrong type");
  }
}

json read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  TORCH_CHECK_VALUE(in.good(), what, ": cannot open schedule file '", path, "'");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    TORCH_CHECK_VALUE(false, what, ": JSON syntax error in '", path, "': ", e.what());
  }
}

}  // namespace

std::vector<std::string> schedule_families() {
  std::vector<std::string> f = {"file", "inq_paper", "steps", "table"};
  for (const auto& a : ana_schedule_families()) f.push_back(a);
  std::sort(f.begin(), f.end());
  return f;
}

namespace {
std::string family_list() {
  std::string s;
  for (const auto& f : schedule_families()) s += (s.empty() ? "" : ", ") + f;
  return s;
}
}  // namespace

std::unique_ptr<Schedule> make_schedule(const json& spec, Quantity quantity,
                                        const std::string& what) {
  TORCH_CHECK_VALUE(spec.is_object() && spec.contains("family") && spec["family"].is_string(), what,
                    " must be an object with a string \"family\" (one of: ", family_list(), ")");
  std::string family = spec["family"].get<std::string>();
  std::unique_ptr<Schedule> s;
  if (family == "inq_paper" || family == "steps") {
    std::vector<double> portions;
    if (family == "inq_paper") {
      check_keys(spec, {"bits", "epochs_per_step"}, what);
      int bits = get<int>(spec, "bits", 5, what);
      TORCH_CHECK_VALUE(bits >= 2 && bits <= 5, what, ".bits = ", bits,
                        ". Violated constraint: the paper gives portions for 2 <= bits <= 5");
      portions = inq_paper_portions(bits);
    } else {
      check_keys(spec, {"portions", "epochs_per_step"}, what);
      TORCH_CHECK_VALUE(spec.contains("portions"), what, ": missing key 'portions'");
      portions = get<std::vector<double>>(spec, "portions", {}, what);
    }
    s = std::make_unique<StepListSchedule>(portions,
                                           get<int64_t>(spec, "epochs_per_step", 1, what));
  } else if (family == "table") {
    check_keys(spec, {"quantity", "values", "epochs", "layers"}, what);
    json t = spec;
    t.erase("family");
    s = std::make_unique<TableSchedule>(ScheduleTable::from_json(t, what));
  } else if (family == "file") {
    check_keys(spec, {"path"}, what);
    TORCH_CHECK_VALUE(spec.contains("path") && spec["path"].is_string(), what,
                      ": missing string key 'path'");
    std::string path = spec["path"].get<std::string>();
    s = std::make_unique<TableSchedule>(ScheduleTable::from_json(read_file(path, what), path));
  } else if (const auto ana = ana_schedule_families();
             std::find(ana.begin(), ana.end(), family) != ana.end()) {
    s = make_ana_schedule(spec, what);
  } else {
    TORCH_CHECK_VALUE(false, what, ".family = \"", family, "\" is not one of: ", family_list());
  }
  TORCH_CHECK_VALUE(s->quantity() == quantity, what, " gives ", to_string(s->quantity()),
                    " values but this algorithm needs ", to_string(quantity), " values");
  return s;
}

}  // namespace qsched::sched
