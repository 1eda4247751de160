#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"
#include "meta/apply.h"

namespace po = boost::program_options;

namespace qsched::cli {

int cmd_apply(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string out, controller, base = "meta";
  bool resume = false, quiet = false, force = false;
  po::options_description desc("qsched apply flags");
  desc.add_options()("help,h", "show this help")(
      "controller", po::value(&controller),
      "trained controller: a meta-train output directory (controller.json + controller.pt)")(
      "out", po::value(&out), "run directory to create (or to resume with --resume)")(
      "base", po::value(&base)->default_value("meta"),
      "base schedule of the residual: meta (the one it was meta-trained with) | config (the "
      "config's own schedule, e.g. for another epoch budget)")(
      "resume", po::bool_switch(&resume),
      "continue the run in --out with what it recorded: config.json, its copy of the controller "
      "and apply.json (--base); a --controller or --base that differs from the record is an "
      "error")("quiet", po::bool_switch(&quiet), "no progress bar, no per-epoch lines")(
      "force", po::bool_switch(&force),
      "write into --out even if it is not a qsched apply directory (files qsched writes are "
      "overwritten, others left alone, nothing is deleted)");
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
          "DIR/controller/ (a copy of the controller) and DIR/apply.json (controller\n"
          "fingerprint and --base), which --resume uses."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  meta::ApplyOptions opt;
  opt.base = base;
  opt.run.out_dir = out;
  opt.run.resume = resume;
  opt.run.quiet = quiet;
  opt.run.force = force;
  const std::string copy = out + "/controller";
  inner::RunConfig cfg;
  if (resume) {
    TORCH_CHECK_VALUE(!flags.any_override(),
                      "--resume uses the run's saved config.json; drop --config and overrides");
    claim_output_dir(out, "apply", /*resume=*/true, /*force=*/false);
    remove_stale_temporaries(copy);
    const meta::ApplyRecord rec = meta::ApplyRecord::load(out);
    TORCH_CHECK_VALUE(vm["base"].defaulted() || base == rec.base, "--base ", base,
                      " contradicts the run's record: base \"", rec.base, "\" (", out,
                      "/apply.json); drop --base to resume");
    if (!controller.empty()) {
      const std::string given = meta::controller_fingerprint(meta::load_controller(controller));
      TORCH_CHECK_VALUE(given == rec.fingerprint, "--controller ", controller,
                        " is not the controller this run was started with (recorded: '",
                        rec.controller, "', fingerprint ", rec.fingerprint, "; given: ", given,
                        "); drop --controller to resume with the run's copy");
    }
    const std::string copied = meta::controller_fingerprint(meta::load_controller(copy));
    TORCH_CHECK_VALUE(copied == rec.fingerprint, "controller copy '", copy, "' has fingerprint ",
                      copied, ", the run's record (", out, "/apply.json) says ", rec.fingerprint,
                      ": the run directory was altered");
    cfg = inner::load_run_config(out);
    opt.base = rec.base;
    opt.controller = copy;
  } else {
    TORCH_CHECK_VALUE(!controller.empty(), "missing --controller DIR (a qsched meta-train --out)");
    TORCH_CHECK_VALUE(!flags.config.empty(), "missing --config FILE (see experiments/configs/)");
    TORCH_CHECK_VALUE(flags.schedule.empty(), "--schedule conflicts with --controller");
    cfg = flags.resolve();
    auto saved = meta::load_controller(controller);  // validate before creating anything
    meta::controller_algorithm(saved, base, cfg);
    claim_output_dir(out, "apply", /*resume=*/false, force);
    TORCH_CHECK_VALUE(!file_exists(out + "/checkpoint.pt") && !file_exists(out + "/summary.json"),
                      "output directory '", out,
                      "' already holds a run; use --resume to continue it or choose another --out");
    make_dirs(copy);
    meta::save_controller(copy, saved.controller, saved.algorithm, saved.quantity,
                          saved.base_schedule, saved.spec.value("meta", json::object()));
    meta::ApplyRecord{controller, meta::controller_fingerprint(saved), base}.save(out);
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
