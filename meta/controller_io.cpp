#include "meta/controller_io.h"

#include <sstream>

#include "inner/algorithms/registry.h"
#include "inner/base/json_reader.h"
#include "inner/io.h"
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
  const std::string bytes = archive_bytes(a, "controller");
  make_dirs(dir);
  atomic_write(dir + "/controller.pt", bytes);
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
  if (!spec.is_object() || !spec.contains("format") || spec["format"] != "qsched-controller")
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
  {
    bool known = false;
    for (const auto& n : inner::algorithm_names()) known = known || n == s.algorithm;
    if (!known || inner::algorithm_spec(s.algorithm).quantity != s.quantity)
      bad("algorithm \"" + s.algorithm + "\" does not match quantity " +
          sched::to_string(s.quantity));
  }
  TORCH_CHECK_VALUE(file_exists(ppath), "controller file '", ppath, "' does not exist");
  ArchiveReader r(ppath, "controller", "controller file");
  torch::Tensor theta;
  c10::IValue text = r.read("spec");
  if (!text.isString()) r.fail("has a 'spec' that is not a string");
  try {
    r.archive().read("theta", theta, /*is_buffer=*/true);
  } catch (const std::exception& e) {
    r.fail("lacks a readable 'theta' (" + one_line(e) + ")");
  }
  json saved;
  std::string json_error;
  TORCH_CHECK_VALUE(parse_json_strict(text.toStringRef(), saved, json_error) && saved == spec,
                    "controller file '", ppath, "' does not belong to '", jpath,
                    "' (their specs differ)");
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

std::string controller_fingerprint(const SavedController& c) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64 offset basis
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;  // FNV prime
  };
  const std::string spec = c.spec.dump();
  mix(spec.data(), spec.size());
  const torch::Tensor theta = c.controller->flat_parameters().to(torch::kFloat).contiguous();
  mix(theta.data_ptr(), theta.numel() * sizeof(float));
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace qsched::meta
