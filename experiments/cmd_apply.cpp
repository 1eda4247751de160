#include <cstdio>
#include <filesystem>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/run.h"
#include "inner/runtime.h"
#include "meta/apply.h"

namespace po = boost::program_options;

namespace qsched::cli {

int cmd_apply(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string out, controller, base = "meta";
  bool resume = false, quiet = false;
  po::options_description desc("qsched apply flags");
  desc.add_options()("help,h", "show this help")(
      "controller", po::value(&controller),
      "trained controller: a meta-train output directory (controller.json + controller.pt)")(
      "out", po::value(&out), "run directory to create (or to resume with --resume)")(
      "base", po::value(&base)->default_value("meta"),
      "base schedule of the residual: meta (the one it was meta-trained with) | config (the "
      "config's own schedule, e.g. for another epoch budget)")(
      "resume", po::bool_switch(&resume),
      "continue the run in --out (its config.json and its copy of the controller)")(
      "quiet", po::bool_switch(&quiet), "no progress bar, no per-epoch lines");
  flags.add_to(desc);
  po::variables_map vm;
  if (!parse_flags(
          args, desc, vm,
          "usage: qsched apply --controller DIR --config FILE --out DIR [overrides]\n"
          "       qsched apply --resume --out DIR\n\n"
          "Runs INQ or ANA on any network and dataset the config names, with the trained\n"
          "controller choosing the per-layer fractions / noise levels every epoch. Writes the\n"
          "same run directory as qsched train, plus schedule.json (the values the controller\n"
          "chose: qsched train --schedule DIR/schedule.json replays them without it) and\n"
          "DIR/controller/ (a copy of the controller, used by --resume)."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  meta::ApplyOptions opt;
  opt.base = base;
  opt.run.out_dir = out;
  opt.run.resume = resume;
  opt.run.quiet = quiet;
  const std::string copy = out + "/controller";
  inner::RunConfig cfg;
  if (resume) {
    TORCH_CHECK_VALUE(!flags.any_override(),
                      "--resume uses the run's saved config.json; drop --config and overrides");
    cfg = inner::load_run_config(out);
    opt.controller = controller.empty() ? copy : controller;
  } else {
    TORCH_CHECK_VALUE(!controller.empty(), "missing --controller DIR (a qsched meta-train --out)");
    TORCH_CHECK_VALUE(!flags.config.empty(), "missing --config FILE (see experiments/configs/)");
    TORCH_CHECK_VALUE(flags.schedule.empty(), "--schedule conflicts with --controller");
    cfg = flags.resolve();
    auto saved = meta::load_controller(controller);  // validate before creating anything
    meta::controller_algorithm(saved, base, cfg);
    std::filesystem::create_directories(copy);
    meta::save_controller(copy, saved.controller, saved.algorithm, saved.quantity,
                          saved.base_schedule, saved.spec.value("meta", json::object()));
    opt.controller = copy;
  }
  auto outcome = meta::apply_controller(cfg, opt);
  if (outcome.termination == inner::Termination::kInterrupted) return kExitInterrupted;
  const auto& s = outcome.summary;
  std::printf(
      "%s: %s with the learned schedule, %s after %lld epochs: test acc %.4f, test loss "
      "%.4f (%s, schedule.json)\n",
      out.c_str(), s["algorithm"].get<std::string>().c_str(),
      s["termination"].get<std::string>().c_str(),
      static_cast<long long>(s["epochs"].get<int64_t>()), s["test_acc"].get<double>(),
      s["test_loss"].get<double>(), (out + "/summary.json").c_str());
  if (outcome.termination == inner::Termination::kDiverged)
    std::fprintf(stderr, "warning: training diverged (non-finite loss)\n");
  return kExitOk;
}

}  // namespace qsched::cli
