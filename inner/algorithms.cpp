#include "inner/algorithms.h"

#include "inner/ana/ana.h"
#include "inner/inq/inq.h"

namespace qsched::inner {

std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg) {
  if (cfg.algorithm == "float") return std::make_unique<Algorithm>();
  if (cfg.algorithm == "inq") {
    auto it = cfg.algorithm_sections.find("inq");
    return std::make_unique<inq::InqAlgorithm>(
        inq::InqOptions::from_json(it == cfg.algorithm_sections.end() ? json::object() : *it));
  }
  if (cfg.algorithm == "ana") return std::make_unique<ana::AnaAlgorithm>(cfg);
  TORCH_CHECK_VALUE(false, "config: algorithm = \"", cfg.algorithm, "\" is not available");
}

}  // namespace qsched::inner
