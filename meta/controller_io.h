#pragma once
// A trained controller as standalone files, for `qsched apply` and reports:
//
//   controller.json   {"format": "qsched-controller", "version": 1,
//                      "algorithm": "inq" | "ana", "quantity": "fraction" | "noise",
//                      "controller": {"hidden": H}, "num_parameters": P,
//                      "features": {"version": kFeatureVersion, "names": [...]},
//                      "base_schedule": {...hand-coded schedule spec...},
//                      "meta": {"step": k, "seed": s}}
//   controller.pt     torch archive: "spec" (the JSON text above, must match the .json file)
//                     and "theta" (float32 [P])
//
// Both are written atomically. Loading checks the format, version, feature spec, parameter
// count and that the two files belong together; anything else is a one-line c10::ValueError.
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "meta/controller.h"

namespace qsched::meta {

constexpr int64_t kControllerFileVersion = 1;

struct SavedController {
  json spec;  ///< the controller.json document
  Controller controller{nullptr};
  std::string algorithm;
  sched::Quantity quantity = sched::Quantity::kFraction;
  json base_schedule;

  /// A fresh schedule for one inner run (base from base_schedule).
  std::unique_ptr<ControllerSchedule> make_schedule() const;
};

/// Writes dir/controller.json and dir/controller.pt.
void save_controller(const std::string& dir, const Controller& c, const std::string& algorithm,
                     sched::Quantity q, const json& base_schedule, const json& meta);

/// Loads dir/controller.json + dir/controller.pt (`dir` may also name controller.json).
SavedController load_controller(const std::string& dir);

/// Identity of a controller: 16 hex digits of a 64-bit FNV-1a hash of its spec (controller.json)
/// and parameters. Equal for a controller and its copy; recorded by runs that use one (qsched
/// apply's apply.json) so that a resume can tell whether it is given the same controller.
std::string controller_fingerprint(const SavedController& c);

}  // namespace qsched::meta
