#include "experiments/run_flags.h"

#include <iostream>

#include "inner/algorithms/registry.h"

namespace po = boost::program_options;

namespace qsched::cli {

void RunFlags::add_to(po::options_description& desc) {
  desc.add_options()("config", po::value(&config), "JSON config file (keys: see inner/config.h)")(
      "epochs", ranged<int64_t>(&epochs, "epochs", 1, inner::kMaxEpochs), "override train.epochs")(
      "subset", ranged<int64_t>(&subset, "subset", 0, int64_t{1} << 31),
      "override data.subset: stratified N training samples (0 = all)")(
      "seed", ranged<int64_t>(&seed, "seed", 0, int64_t{1} << 62),
      "override seed (data split and order, init)")(
      "data", po::value(&data), "override data.root (directory with the IDX/CIFAR files)")(
      "threads", ranged(&threads, "threads", 1, 256), "override threads (torch and OpenBLAS)")(
      "device", po::value(&device), "override device: cpu | cuda | cuda:K")(
      "schedule", po::value(&schedule),
      "replay a recorded schedule.json (of any run: hand-coded, table or learned) exactly")(
      "set", po::value(&sets)->composing(),
      "override any field: --set train.optimizer.lr=0.01 (repeatable; value parsed as JSON)");
}

bool RunFlags::any_override() const {
  return !config.empty() || !sets.empty() || epochs >= 0 || subset >= 0 || seed >= 0 ||
         threads >= 0 || !data.empty() || !device.empty() || !schedule.empty();
}

json RunFlags::document(const json& base) const {
  json j = config.empty() ? base : read_json_file(config);
  TORCH_CHECK_VALUE(j.is_object(), "config '", config, "' must hold a JSON object");
  if (epochs >= 0) j["train"]["epochs"] = epochs;
  if (subset >= 0) j["data"]["subset"] = subset;
  if (seed >= 0) j["seed"] = seed;
  if (threads >= 0) j["threads"] = threads;
  if (!data.empty()) j["data"]["root"] = data;
  if (!device.empty()) j["device"] = device;
  for (const auto& s : sets) apply_override(j, s);
  if (!schedule.empty()) {
    std::string alg = j.contains("algorithm") && j["algorithm"].is_string()
                          ? j["algorithm"].get<std::string>()
                          : "float";
    inner::scheduled_algorithm(alg, "--schedule needs an algorithm with a schedule; algorithm");
    j[alg]["schedule"] = {{"family", "file"}, {"path", schedule}};
  }
  return j;
}

inner::RunConfig RunFlags::resolve(const json& base) const {
  return inner::parse_run_config(document(base));
}

bool parse_flags(const std::vector<std::string>& args, const po::options_description& desc,
                 po::variables_map& vm, const char* usage) {
  const po::parsed_options parsed = po::command_line_parser(args).options(desc).run();
  // Without a positional description boost drops stray words ("--epochs 1 5" would run one
  // epoch and ignore the 5): refuse them.
  for (const auto& o : parsed.options) {
    if (o.position_key >= 0 || o.string_key.empty()) {
      const std::string word = o.original_tokens.empty() ? "" : o.original_tokens.front();
      throw po::error("unexpected argument '" + word + "' (every value belongs to a --flag)");
    }
  }
  po::store(parsed, vm);
  if (vm.count("help")) {
    std::cout << usage << "\n\n" << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace qsched::cli
