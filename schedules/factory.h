#pragma once
// Creating schedules from their JSON spec (the "schedule" key of an algorithm's section):
//
//   {"family": "inq_paper", "bits": 5, "epochs_per_step": 2}      INQ paper's portions
//   {"family": "steps", "portions": [0.5, 0.75, 1], "epochs_per_step": 2}
//   {"family": "table", "quantity": "fraction", "values": [[...L...] x T]}   explicit per layer
//   {"family": "file", "path": "runs/x/schedule.json"}           replay a recorded schedule
//
//   {"family": "power", "alpha": 2, "layout": "stagger", "delta": 1}   windowed families
//   {"family": "ana_window", ...}                                  ANA bounded windows
//
// Every family goes through the registry (schedules/registry.h): unknown families list the
// valid ones; unknown keys list the valid keys; types and ranges are checked against the
// family's declared parameters.
#include <memory>
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::sched {

/// Creates the schedule `spec` describes, for a run that needs `quantity`. `what` names the
/// spec in errors (e.g. "config: inq.schedule").
std::unique_ptr<Schedule> make_schedule(const json& spec, Quantity quantity,
                                        const std::string& what);

/// Families make_schedule accepts.
std::vector<std::string> schedule_families();

}  // namespace qsched::sched
