#include <cstdio>
#include <filesystem>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/run.h"
#include "inner/runtime.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {
// The embedded default job: float MLP 784-256-10 on Fashion-MNIST (the Debian package
// dataset-fashion-mnist), the float baseline every quantized schedule is compared against.
const char* kDemoConfig = R"({
  "seed": 0,
  "threads": 1,
  "data": {"format": "idx", "root": "/usr/share/datasets/fashion-mnist", "val_size": 5000},
  "network": {"type": "mlp", "hidden": [256]},
  "train": {"epochs": 10, "batch_size": 128,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001},
            "lr_schedule": {"name": "cosine"}}
})";
}  // namespace

int cmd_demo(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string out = "runs/demo";
  po::options_description desc("qsched demo flags");
  desc.add_options()("help,h", "show this help")("out", po::value(&out)->default_value(out),
                                                 "directory for the demo's run(s); replaced");
  flags.add_to(desc);
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched demo [--out DIR] [overrides]\n\n"
                   "Runs the main job on the embedded default data: trains the float MLP "
                   "784-256-10 on\nFashion-MNIST (train/val split of the training files), "
                   "evaluates it on the test set\nand prints the result. Overrides apply to the "
                   "embedded config (e.g. --epochs 3)."))
    return kExitOk;
  inner::RunConfig cfg = flags.resolve(json::parse(kDemoConfig));
  std::string run_dir = out + "/float_mlp";
  std::error_code ec;
  std::filesystem::remove_all(run_dir, ec);
  std::printf("qsched demo: float MLP 784-256-10 on Fashion-MNIST, %lld epochs (run dir %s)\n",
              static_cast<long long>(cfg.train.epochs), run_dir.c_str());
  std::fflush(stdout);
  inner::RunOptions opt;
  opt.out_dir = run_dir;
  auto outcome = inner::run_training(cfg, opt);
  if (outcome.termination == inner::Termination::kInterrupted) return kExitInterrupted;
  const auto& s = outcome.summary;
  std::printf(
      "\nresult: float MLP, Fashion-MNIST test accuracy %.2f%% (val %.2f%%), %lld epochs in "
      "%.1fs\nsummary: %s/summary.json, per-epoch metrics: %s/metrics.jsonl\n",
      100 * s["test_acc"].get<double>(), 100 * s["val_acc"].get<double>(),
      static_cast<long long>(s["epochs"].get<int64_t>()), s["seconds"].get<double>(),
      run_dir.c_str(), run_dir.c_str());
  return kExitOk;
}

}  // namespace qsched::cli
