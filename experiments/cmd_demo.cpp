#include <cstdio>
#include <filesystem>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/io.h"
#include "inner/json_reader.h"
#include "inner/run.h"
#include "inner/runtime.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {
// The embedded default job on Fashion-MNIST (the Debian package dataset-fashion-mnist):
// a float MLP 784-256-10, then INQ from that float model to 5-bit and to ternary (2-bit)
// powers of two with the INQ paper's accumulated portions.
const char* kFloatConfig = R"({
  "seed": 0,
  "threads": 1,
  "data": {"format": "idx", "root": "/usr/share/datasets/fashion-mnist", "val_size": 5000},
  "network": {"type": "mlp", "hidden": [256]},
  "train": {"epochs": 10, "batch_size": 128,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001},
            "lr_schedule": {"name": "cosine"}}
})";

struct Stage {
  const char* name;
  int bits;
  int epochs_per_step;
  int epochs;
  const char* codebook;  ///< ternary needs min-error: the paper's rule zeroes most weights
};
const Stage kInqStages[] = {{"inq5", 5, 2, 7, "paper"}, {"inq2", 2, 1, 10, "min-error"}};

json run_stage(const inner::RunConfig& cfg, const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  inner::RunOptions opt;
  opt.out_dir = dir;
  auto outcome = inner::run_training(cfg, opt);
  if (outcome.termination == inner::Termination::kInterrupted)
    throw inner::Termination::kInterrupted;
  return outcome.summary;
}
}  // namespace

int cmd_demo(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string out = "runs/demo";
  int meta_steps = 25;
  po::options_description desc("qsched demo flags");
  desc.add_options()("help,h", "show this help")("out", po::value(&out)->default_value(out),
                                                 "directory for the demo's runs (replaced)")(
      "meta-steps", po::value(&meta_steps)->default_value(meta_steps),
      "outer steps of the controller's meta-training (0 skips stages 4 and 5)");
  flags.add_to(desc);
  po::variables_map vm;
  if (!parse_flags(
          args, desc, vm,
          "usage: qsched demo [--out DIR] [--meta-steps N] [overrides]\n\n"
          "Runs the main job on the embedded default data (Fashion-MNIST):\n"
          "  1. float MLP 784-256-10, 10 epochs (train/val split of the training files)\n"
          "  2. INQ from that model to 5-bit powers of two, portions {0.5,0.75,0.875,1}\n"
          "  3. INQ from that model to ternary {0, ±2^n1} (min-error codebook), the\n"
          "     paper's 2-bit portions\n"
          "  4. meta-trains a ternary-INQ schedule controller on small MLP tasks\n"
          "     (experiments/configs/meta_inq_mlp.json, --meta-steps outer ES steps)\n"
          "  5. applies it to held-out networks (MLP 96 and a 3-hidden-layer MLP) and\n"
          "     compares it with hand-coded schedules over 5 paired seeds (report + plots)\n"
          "and prints the test accuracies. Overrides apply to the float stage's config\n"
          "(e.g. --epochs 3 --subset 5000 for a quick look)."))
    return kExitOk;
  TORCH_CHECK_VALUE(meta_steps >= 0, "--meta-steps must be >= 0 (0 skips stages 4 and 5), got ",
                    meta_steps);
  inner::RunConfig fcfg = flags.resolve(json::parse(kFloatConfig));
  std::printf("qsched demo: Fashion-MNIST, MLP 784-256-10; runs in %s/\n", out.c_str());
  std::printf("\n[1/5] float training, %lld epochs\n", static_cast<long long>(fcfg.train.epochs));
  std::fflush(stdout);
  try {
    json fs = run_stage(fcfg, out + "/float");
    std::vector<std::pair<std::string, json>> results = {{"float", fs}};
    int k = 2;
    for (const auto& st : kInqStages) {
      json j = fcfg.to_json();
      j["algorithm"] = "inq";
      j["train"]["epochs"] = st.epochs;
      j["train"]["optimizer"]["lr"] = 0.01;
      j["train"]["lr_schedule"] = {{"name", "cosine"}, {"min_lr", 0.0005}};
      j["inq"] = {
          {"bits", st.bits},
          {"codebook", st.codebook},
          {"init_checkpoint", out + "/float/checkpoint.pt"},
          {"schedule",
           {{"family", "inq_paper"}, {"bits", st.bits}, {"epochs_per_step", st.epochs_per_step}}}};
      std::printf(
          "\n[%d/5] INQ to %d-bit powers of two (%s codebook), %d epochs from the float "
          "model\n",
          k++, st.bits, st.codebook, st.epochs);
      std::fflush(stdout);
      results.emplace_back(st.name, run_stage(inner::parse_run_config(j), out + "/" + st.name));
    }
    std::printf("\n%-7s %-28s %9s %9s %8s\n", "run", "weights", "test acc", "vs float", "on grid");
    double base = fs["test_acc"].get<double>();
    for (const auto& [name, s] : results) {
      std::string weights = "float32";
      if (name != "float") {
        int b = s["bits"].get<int>();
        weights = b == 2 ? std::string("ternary {0, ±2^n1}")
                         : std::to_string(b) + "-bit: " + std::to_string((1 << (b - 1)) + 1) +
                               " levels {0, ±2^k}";
      }
      double a = s["test_acc"].get<double>();
      std::printf("%-7s %-28s %8.2f%% %+8.2f %8s\n", name.c_str(), weights.c_str(), 100 * a,
                  100 * (a - base),
                  name == "float" ? "-" : (s["on_grid"].get<bool>() ? "yes" : "NO"));
    }
    std::printf(
        "\nper-run files (config, metrics.jsonl, summary.json, schedule.json, checkpoint):"
        " %s/{float,inq5,inq2}/\n",
        out.c_str());
  } catch (inner::Termination) {
    return kExitInterrupted;
  }
  if (meta_steps <= 0) return kExitOk;
  const std::string src = QSCHED_SOURCE_DIR;
  std::error_code ec;
  std::filesystem::remove_all(out + "/meta", ec);
  std::filesystem::remove_all(out + "/compare", ec);
  std::printf("\n[4/5] meta-training a ternary-INQ schedule controller, %d outer ES steps\n",
              meta_steps);
  std::fflush(stdout);
  int rc = cmd_meta_train({"--config", src + "/experiments/configs/meta_inq_mlp.json", "--out",
                           out + "/meta", "--steps", std::to_string(meta_steps)});
  if (rc != kExitOk) return rc;
  std::printf("\n[5/5] learned vs hand-coded schedules on held-out networks, 5 paired seeds\n");
  std::fflush(stdout);
  json cmp = read_json_file(src + "/experiments/compare/inq_mlp_ternary.json");
  cmp["config"] = src + "/" + cmp["config"].get<std::string>();
  for (auto& e : cmp["schedules"])
    if (e.contains("controller")) e["controller"] = out + "/meta";
  std::filesystem::create_directories(out + "/compare");
  atomic_write(out + "/compare/compare_input.json", cmp.dump(2) + "\n");
  rc = cmd_compare({"--config", out + "/compare/compare_input.json", "--out", out + "/compare"});
  if (rc == kExitOk)
    std::printf("\nreport with plots: %s/compare/report.md; controller: %s/meta/\n", out.c_str(),
                out.c_str());
  return rc;
}

}  // namespace qsched::cli
