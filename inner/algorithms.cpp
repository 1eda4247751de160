#include "inner/algorithms.h"

#include "inner/ana/ana.h"
#include "inner/inq/inq.h"

namespace qsched::inner {

std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg,
                                          std::unique_ptr<sched::Schedule> schedule) {
  auto check_quantity = [&](sched::Quantity q) {
    TORCH_CHECK_VALUE(!schedule || schedule->quantity() == q, "algorithm ", cfg.algorithm,
                      " needs a schedule of ", sched::to_string(q), ", got one of ",
                      sched::to_string(schedule->quantity()));
  };
  if (cfg.algorithm == "float") {
    TORCH_CHECK_VALUE(!schedule, "config: algorithm \"float\" takes no schedule");
    return std::make_unique<Algorithm>();
  }
  if (cfg.algorithm == "inq") {
    check_quantity(sched::Quantity::kFraction);
    auto it = cfg.algorithm_sections.find("inq");
    return std::make_unique<inq::InqAlgorithm>(
        inq::InqOptions::from_json(it == cfg.algorithm_sections.end() ? json::object() : *it),
        std::move(schedule));
  }
  if (cfg.algorithm == "ana") {
    check_quantity(sched::Quantity::kNoise);
    return std::make_unique<ana::AnaAlgorithm>(cfg, std::move(schedule));
  }
  TORCH_CHECK_VALUE(false, "config: algorithm = \"", cfg.algorithm, "\" is not available");
}

}  // namespace qsched::inner
