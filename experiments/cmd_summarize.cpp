#include <cmath>
#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/io.h"
#include "inner/run.h"

namespace po = boost::program_options;

namespace qsched::cli {

int cmd_summarize(const std::vector<std::string>& args) {
  std::vector<std::string> runs;
  po::options_description desc("qsched summarize flags");
  desc.add_options()("help,h", "show this help")("run", po::value(&runs)->composing(),
                                                 "run directory (repeatable, or positional)");
  po::positional_options_description pos;
  pos.add("run", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::printf(
        "usage: qsched summarize RUN_DIR...\n\nPrints test/val accuracy of each finished run "
        "(its summary.json) and their mean ± sample std,\ne.g. over the seeds of one "
        "config.\n\n");
    return kExitOk;
  }
  po::notify(vm);
  TORCH_CHECK_VALUE(!runs.empty(), "no run directories given");
  std::vector<double> acc;
  std::printf("%-40s %-6s %9s %9s %8s %7s\n", "run", "alg", "test acc", "val acc", "epochs",
              "on_grid");
  for (const auto& r : runs) {
    json s = inner::read_summary(r + "/summary.json");
    double a = s.at("test_acc").get<double>();
    acc.push_back(a);
    std::string grid = s.contains("on_grid") ? (s["on_grid"].get<bool>() ? "yes" : "NO") : "-";
    std::printf("%-40s %-6s %8.2f%% %8.2f%% %8lld %7s\n", r.c_str(),
                s.at("algorithm").get<std::string>().c_str(), 100 * a,
                100 * s.at("val_acc").get<double>(),
                static_cast<long long>(s.at("epochs").get<int64_t>()), grid.c_str());
  }
  double mean = 0, var = 0;
  for (double a : acc) mean += a / acc.size();
  for (double a : acc) var += (a - mean) * (a - mean) / std::max<size_t>(acc.size() - 1, 1);
  std::printf("mean test acc over %zu runs: %.2f%% ± %.2f (sample std, points)\n", acc.size(),
              100 * mean, 100 * std::sqrt(var));
  return kExitOk;
}

}  // namespace qsched::cli
