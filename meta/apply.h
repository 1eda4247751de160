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
//
// Everything that determines an apply run is recorded in its directory: config.json (the run
// config), controller/ (a copy of the controller) and apply.json (ApplyRecord below: where the
// controller came from, its fingerprint, the base). A resume uses the record; a flag that
// contradicts it is a c10::ValueError naming the flag and the recorded value. The directory's
// ownership marker has kind "apply" (inner/run_dir.h).
#include <memory>
#include <string>

#include "inner/run.h"
#include "meta/controller_io.h"

namespace qsched::meta {

/// <run>/apply.json: {"controller": "<path given>", "fingerprint": "<16 hex>", "base": "meta"}.
struct ApplyRecord {
  std::string controller;   ///< as given to --controller (for messages)
  std::string fingerprint;  ///< controller_fingerprint (meta/controller_io.h)
  std::string base;         ///< "meta" | "config"

  json to_json() const;
  /// Reads <run_dir>/apply.json; a missing or malformed file is a c10::ValueError.
  static ApplyRecord load(const std::string& run_dir);
  void save(const std::string& run_dir) const;
};

struct ApplyOptions {
  std::string controller;     ///< directory (or controller.json) of a saved controller
  std::string base = "meta";  ///< "meta" | "config": which base schedule the residual uses
  inner::RunOptions run;      ///< out_dir, resume, quiet, force (kind, make_algorithm set by apply)
};

/// Checks that the controller fits the run (same algorithm) and returns the algorithm factory
/// run_training needs. Throws c10::ValueError on a mismatch.
std::function<std::unique_ptr<inner::Algorithm>(const inner::RunConfig&)> controller_algorithm(
    const SavedController& saved, const std::string& base, const inner::RunConfig& cfg);

/// Runs (or resumes) `cfg` with the controller as its schedule.
inner::RunOutcome apply_controller(const inner::RunConfig& cfg, const ApplyOptions& opt);

}  // namespace qsched::meta
