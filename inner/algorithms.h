#pragma once
// The algorithm registry: the config's "algorithm" key -> an Algorithm for the Trainer.
//
//   "float"  plain training (the base Algorithm, all hooks no-ops)
//   "inq"    incremental network quantization, config section "inq" (inner/inq/inq.h)
//   "ana"    additive noise annealing, config section "ana" (inner/ana/ana.h)
#include <memory>

#include "inner/config.h"
#include "inner/trainer.h"

namespace qsched::inner {

/// Creates the algorithm `cfg.algorithm` names; its section is validated when the trainer
/// attaches it (before training).
std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg);

}  // namespace qsched::inner
