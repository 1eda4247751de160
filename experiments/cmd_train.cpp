#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/run.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"

namespace po = boost::program_options;

namespace qsched::cli {

int cmd_train(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string out;
  bool resume = false, quiet = false, force = false;
  po::options_description desc("qsched train flags");
  desc.add_options()("help,h", "show this help")(
      "out", po::value(&out), "run directory to create (or to resume with --resume)")(
      "resume", po::bool_switch(&resume),
      "continue the run in --out from its checkpoint, with its saved config.json")(
      "quiet", po::bool_switch(&quiet), "no progress bar, no per-epoch lines")(
      "force", po::bool_switch(&force),
      "write into --out even if it is not a qsched train directory (a non-empty directory "
      "without qsched's .qsched-run marker, or another kind of run): config.json, metrics.jsonl,"
      " summary.json, schedule.json, checkpoint.pt there are overwritten, other files are left "
      "alone, nothing is deleted");
  flags.add_to(desc);
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched train --config FILE --out DIR [overrides]\n"
                   "       qsched train --resume --out DIR\n\n"
                   "Trains one network as the config says and writes DIR/config.json, "
                   "metrics.jsonl,\nsummary.json and checkpoint.pt. Ctrl-C saves a checkpoint; "
                   "--resume continues it\nand ends with exactly the metrics of an uninterrupted "
                   "run.\n--out must not exist, be empty, or be an unfinished qsched train run "
                   "without a\ncheckpoint (anything else is refused unless --force)."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  inner::RunConfig cfg;
  if (resume) {
    TORCH_CHECK_VALUE(!flags.any_override(),
                      "--resume uses the run's saved config.json; drop --config and overrides");
    claim_output_dir(out, "train", /*resume=*/true, /*force=*/false);  // before reading it
    cfg = inner::load_run_config(out);
  } else {
    TORCH_CHECK_VALUE(!flags.config.empty(), "missing --config FILE (see experiments/configs/)");
    cfg = flags.resolve();
  }
  inner::RunOptions opt;
  opt.out_dir = out;
  opt.resume = resume;
  opt.quiet = quiet;
  opt.force = force;
  auto outcome = inner::run_training(cfg, opt);
  if (outcome.termination == inner::Termination::kInterrupted) return kExitInterrupted;
  const auto& s = outcome.summary;
  std::printf("%s: %s run %s after %lld epochs: test acc %.4f, test loss %.4f (%s)\n", out.c_str(),
              s["algorithm"].get<std::string>().c_str(),
              s["termination"].get<std::string>().c_str(),
              static_cast<long long>(s["epochs"].get<int64_t>()), s["test_acc"].get<double>(),
              s["test_loss"].get<double>(), (out + "/summary.json").c_str());
  if (outcome.termination == inner::Termination::kDiverged) {
    std::fprintf(stderr, "warning: training diverged (non-finite loss)\n");
  }
  return kExitOk;
}

}  // namespace qsched::cli
