#pragma once
// The algorithm registry: the config's "algorithm" key -> an Algorithm for the Trainer.
//
//   "float"  plain training (the base Algorithm, all hooks no-ops)
//   "inq"    incremental network quantization, config section "inq" (inner/inq/inq.h)
//   "ana"    additive noise annealing, config section "ana" (inner/ana/ana.h)
#include <memory>

#include "inner/config.h"
#include "inner/trainer.h"
#include "schedules/schedule.h"

namespace qsched::inner {

/// Creates the algorithm `cfg.algorithm` names; its section is validated when the trainer
/// attaches it (before training). `schedule`, when given, replaces the schedule of the
/// algorithm's section (e.g. a schedule object built in code); it must give the algorithm's
/// quantity (INQ fractions, ANA noise levels), else c10::ValueError. Float training takes none.
std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg,
                                          std::unique_ptr<sched::Schedule> schedule = nullptr);

}  // namespace qsched::inner
