#pragma once
// Applying a trained controller to a (new) network: one ordinary run whose schedule is the
// controller (what `qsched apply` does).
//
//   SavedController (controller.json + controller.pt, meta/controller_io.h)
//        + run config (any network of the zoo, any IDX dataset, INQ or ANA)
//        --> inner::run_training with Schedule = ControllerSchedule
//        --> the usual run directory (config.json, metrics.jsonl, checkpoint.pt, summary.json)
//            + schedule.json: the values the controller produced, which
//              `qsched train --schedule schedule.json` replays without the controller.
//
// The controller's recurrent state is part of the run's checkpoint (ControllerCheckpointing
// below), so a killed or interrupted apply resumes with --resume and ends exactly like an
// uninterrupted one.
//
// Base schedule: the controller is a residual around a base schedule. By default that is the
// base it was meta-trained with (controller.json "base_schedule"); with base = "config" it is
// the schedule of the target config (e.g. a different epoch budget needs a base that fits it).
#include <memory>
#include <string>

#include "inner/run.h"
#include "meta/controller_io.h"

namespace qsched::meta {

struct ApplyOptions {
  std::string controller;     ///< directory (or controller.json) of a saved controller
  std::string base = "meta";  ///< "meta" | "config": which base schedule the residual uses
  inner::RunOptions run;      ///< out_dir, resume, quiet (make_algorithm is set by apply)
};

/// Checks that the controller fits the run (same algorithm) and returns the algorithm factory
/// run_training needs. Throws c10::ValueError on a mismatch.
std::function<std::unique_ptr<inner::Algorithm>(const inner::RunConfig&)> controller_algorithm(
    const SavedController& saved, const std::string& base, const inner::RunConfig& cfg);

/// Runs (or resumes) `cfg` with the controller as its schedule.
inner::RunOutcome apply_controller(const inner::RunConfig& cfg, const ApplyOptions& opt);

}  // namespace qsched::meta
