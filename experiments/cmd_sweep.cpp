// qsched sweep / sweep-report: measure hand-coded schedule families (experiments/sweep.h).
#include <cstdio>
#include <thread>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "experiments/sweep.h"
#include "inner/algorithms/registry.h"
#include "inner/io.h"
#include "inner/runtime.h"

namespace po = boost::program_options;

namespace qsched::cli {

int cmd_sweep(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string grid_path, out;
  int seeds = 1, jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool quiet = false, no_report = false, force = false;
  po::options_description desc("qsched sweep flags");
  desc.add_options()("help,h", "show this help")("grid", po::value(&grid_path),
                                                 "grid file (JSON, see experiments/sweep.h)")(
      "seeds", ranged(&seeds, "seeds", 1, 10000), "seeds 0..N-1 per point (default 1)")(
      "out", po::value(&out), "sweep directory (rerun with the same --out to resume)")(
      "jobs", ranged(&jobs, "jobs", 1, 256),
      "runs in parallel, one intra-op thread each (default: cores)")(
      "no-report", po::bool_switch(&no_report), "do not write report.md at the end")(
      "quiet", po::bool_switch(&quiet), "no progress bar")(
      "force", po::bool_switch(&force),
      "use an --out that is not a qsched sweep directory (files qsched writes are overwritten, "
      "others left alone, nothing is deleted)");
  flags.add_to(desc);
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched sweep --config FILE --grid G --seeds N --out DIR [--jobs J] "
                   "[overrides]\n\nRuns every (grid point, seed) as a full INQ/ANA training run "
                   "and appends one row per\nfinished run to DIR/results.csv; rerunning the same "
                   "command resumes a killed sweep.\nAt the end writes DIR/report.md and plots "
                   "(qsched sweep-report)."))
    return kExitOk;
  TORCH_CHECK_VALUE(!flags.config.empty(), "missing --config FILE (an INQ or ANA config)");
  TORCH_CHECK_VALUE(!grid_path.empty(), "missing --grid FILE (see experiments/sweeps/)");
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  TORCH_CHECK_VALUE(flags.schedule.empty(), "--schedule does not apply to a sweep");
  json base = flags.document();
  auto cfg = inner::parse_run_config(base);  // a bad base config fails here, not per point
  inner::scheduled_algorithm(cfg.algorithm, "config '" + flags.config + "': algorithm");
  json grid_doc = read_json_file(grid_path);
  SweepGrid grid = SweepGrid::from_json(grid_doc, "grid '" + grid_path + "'");
  SweepOptions opt;
  opt.out_dir = out;
  opt.seeds = seeds;
  opt.jobs = jobs;
  opt.progress = !quiet;
  opt.force = force;
  int rc = run_sweep(base, grid, grid_doc, opt);
  if (rc != 0 || no_report) return rc;
  write_sweep_report(out, false);
  std::printf("%s/results.csv, %s/report.md\n", out.c_str(), out.c_str());
  return kExitOk;
}

int cmd_sweep_report(const std::vector<std::string>& args) {
  std::string out;
  po::options_description desc("qsched sweep-report flags");
  desc.add_options()("help,h", "show this help")("out", po::value(&out), "sweep directory");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched sweep-report --out DIR\n\nWrites DIR/report.md and PNG plots "
                   "(gnuplot) from DIR/results.csv: accuracy vs every\nswept parameter, main "
                   "effects with 95% confidence intervals over seeds, best and worst\nschedules "
                   "as layer x epoch heatmaps, accuracy vs epochs."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  TORCH_CHECK_VALUE(file_exists(out + "/results.csv"), "'", out,
                    "/results.csv' does not exist (is --out a sweep directory?)");
  write_sweep_report(out, true);
  std::printf("%s/report.md\n", out.c_str());
  return kExitOk;
}

}  // namespace qsched::cli
