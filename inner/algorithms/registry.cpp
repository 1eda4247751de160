#include "inner/algorithms/registry.h"

#include <deque>
#include <mutex>
#include <stdexcept>

namespace qsched::inner {

namespace {

struct Registry {
  std::mutex mu;
  std::deque<AlgorithmSpec> specs;  // registration order; push_back keeps references valid
};

Registry& registry() {
  static Registry r;
  return r;
}

std::string joined_names() {
  std::string s;
  for (const auto& n : algorithm_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

void register_algorithm(AlgorithmSpec spec) {
  register_builtin_algorithms();
  detail::add_algorithm(std::move(spec));
}

void detail::add_algorithm(AlgorithmSpec spec) {
  if (spec.name.empty() || !spec.create)
    throw std::logic_error("register_algorithm: a spec needs a name and create()");
  if (spec.has_section && !spec.resolve)
    throw std::logic_error("register_algorithm: '" + spec.name +
                           "' has a section but no resolve()");
  if (spec.quantity && !spec.schedule_of)
    throw std::logic_error("register_algorithm: '" + spec.name +
                           "' takes a schedule but has no schedule_of()");
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& s : r.specs)
    if (s.name == spec.name)
      throw std::logic_error("register_algorithm: '" + spec.name + "' is registered twice");
  r.specs.push_back(std::move(spec));
}

std::vector<std::string> algorithm_names() {
  register_builtin_algorithms();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> v;
  for (const auto& s : r.specs) v.push_back(s.name);
  return v;
}

const AlgorithmSpec& algorithm_spec(const std::string& name) {
  register_builtin_algorithms();
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& s : r.specs)
      if (s.name == name) return s;
  }
  TORCH_CHECK_VALUE(false, "config: algorithm = \"", name, "\" is not one of: ", joined_names());
}

const AlgorithmSpec& scheduled_algorithm(const std::string& name, const std::string& what) {
  const AlgorithmSpec& spec = algorithm_spec(name);
  if (!spec.quantity) {
    std::string scheduled;
    for (const auto& n : algorithm_names())
      if (algorithm_spec(n).quantity) scheduled += (scheduled.empty() ? "" : ", ") + n;
    TORCH_CHECK_VALUE(false, what, " = \"", name,
                      "\" has no schedule; use an algorithm that has one (", scheduled, ")");
  }
  return spec;
}

std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg,
                                          std::unique_ptr<sched::Schedule> schedule) {
  const AlgorithmSpec& spec = algorithm_spec(cfg.algorithm);
  if (schedule) {
    TORCH_CHECK_VALUE(spec.quantity, "config: algorithm \"", cfg.algorithm, "\" takes no schedule");
    TORCH_CHECK_VALUE(schedule->quantity() == *spec.quantity, "algorithm ", cfg.algorithm,
                      " needs a schedule of ", sched::to_string(*spec.quantity), ", got one of ",
                      sched::to_string(schedule->quantity()));
  }
  return spec.create(cfg, std::move(schedule));
}

}  // namespace qsched::inner
