#include "meta/controller_io.h"

#include <sstream>

#include "inner/io.h"
#include "inner/json_reader.h"
#include "meta/features.h"
#include "schedules/factory.h"

namespace qsched::meta {

std::unique_ptr<ControllerSchedule> SavedController::make_schedule() const {
  return std::make_unique<ControllerSchedule>(
      controller, sched::make_schedule(base_schedule, quantity, "controller base_schedule"));
}

void save_controller(const std::string& dir, const Controller& c, const std::string& algorithm,
                     sched::Quantity q, const json& base_schedule, const json& meta) {
  json spec = {{"format", "qsched-controller"},
               {"version", kControllerFileVersion},
               {"algorithm", algorithm},
               {"quantity", sched::to_string(q)},
               {"controller", c->options().to_json()},
               {"num_parameters", c->num_parameters()},
               {"features", {{"version", kFeatureVersion}, {"names", feature_names()}}},
               {"base_schedule", base_schedule},
               {"meta", meta}};
  const std::string text = spec.dump(2);
  torch::serialize::OutputArchive a;
  a.write("spec", c10::IValue(text));
  a.write("theta", c->flat_parameters(), /*is_buffer=*/true);
  std::ostringstream out;
  a.save_to(out);
  make_dirs(dir);
  atomic_write(dir + "/controller.pt", out.str());
  atomic_write(dir + "/controller.json", text + "\n");
}

SavedController load_controller(const std::string& where) {
  std::string dir = where;
  const std::string suffix = "/controller.json";
  if (dir.size() >= suffix.size() &&
      dir.compare(dir.size() - suffix.size(), suffix.size(), suffix) == 0)
    dir = dir.substr(0, dir.size() - suffix.size());
  const std::string jpath = dir + "/controller.json", ppath = dir + "/controller.pt";
  json spec = read_json_file(jpath);
  auto bad = [&](const std::string& why) {
    TORCH_CHECK_VALUE(false, "controller file '", jpath, "': ", why);
  };
  if (!spec.is_object() || spec.value("format", "") != "qsched-controller")
    bad("not a qsched controller (format != \"qsched-controller\")");
  if (!spec.contains("version") || !spec["version"].is_number_integer() ||
      spec["version"].get<int64_t>() != kControllerFileVersion)
    bad("version " + (spec.contains("version") ? spec["version"].dump() : std::string("missing")) +
        ", this qsched reads version " + std::to_string(kControllerFileVersion));
  SavedController s;
  s.spec = spec;
  try {
    s.algorithm = spec.at("algorithm").get<std::string>();
    s.quantity = sched::quantity_from_string(spec.at("quantity").get<std::string>());
    s.base_schedule = spec.at("base_schedule");
    const json& f = spec.at("features");
    if (f.at("version").get<int64_t>() != kFeatureVersion ||
        f.at("names").get<std::vector<std::string>>() != feature_names())
      bad("feature spec version " + f.at("version").dump() + " differs from this qsched's (" +
          std::to_string(kFeatureVersion) + ")");
    ControllerOptions opt = ControllerOptions::from_json(spec.at("controller"), "controller");
    s.controller = Controller(opt);
    if (spec.at("num_parameters").get<int64_t>() != s.controller->num_parameters())
      bad("num_parameters does not match the controller shape");
  } catch (const json::exception& e) {
    bad(std::string("missing or mistyped field (") + e.what() + ")");
  }
  if ((s.algorithm == "inq") != (s.quantity == sched::Quantity::kFraction) ||
      (s.algorithm != "inq" && s.algorithm != "ana"))
    bad("algorithm \"" + s.algorithm + "\" does not match quantity " +
        sched::to_string(s.quantity));
  TORCH_CHECK_VALUE(file_exists(ppath), "controller file '", ppath, "' does not exist");
  torch::serialize::InputArchive a;
  torch::Tensor theta;
  c10::IValue text;
  try {
    a.load_from(ppath);
    TORCH_CHECK_VALUE(a.try_read("spec", text) && text.isString(), "missing spec");
    a.read("theta", theta, /*is_buffer=*/true);
  } catch (const c10::Error& e) {
    TORCH_CHECK_VALUE(false, "controller file '", ppath, "' is corrupt or not a qsched controller");
  }
  TORCH_CHECK_VALUE(json::parse(text.toStringRef(), nullptr, false) == spec, "controller file '",
                    ppath, "' does not belong to '", jpath, "' (their specs differ)");
  TORCH_CHECK_VALUE(theta.dim() == 1 && theta.numel() == s.controller->num_parameters() &&
                        torch::isfinite(theta).all().item<bool>(),
                    "controller file '", ppath, "' holds ", theta.numel(),
                    " parameters (or non-finite ones); the spec needs ",
                    s.controller->num_parameters());
  s.controller->set_flat_parameters(theta);
  // The base schedule must still be valid for this qsched.
  sched::make_schedule(s.base_schedule, s.quantity,
                       "controller file '" + jpath + "' base_schedule");
  return s;
}

}  // namespace qsched::meta
