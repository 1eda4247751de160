#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/base/json_reader.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/run_dir.h"
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

/// Runs one training stage in `dir`, continuing what an earlier demo left there: a finished run
/// of the same config is reused, an interrupted one resumed; a run of another config is
/// refused (nothing is deleted).
json run_stage(const inner::RunConfig& cfg, const std::string& dir, bool force) {
  inner::RunOptions opt;
  opt.out_dir = dir;
  opt.force = force;
  const bool started = is_own_dir(dir, "train") &&
                       (file_exists(dir + "/checkpoint.pt") || file_exists(dir + "/summary.json"));
  if (started) {
    TORCH_CHECK_VALUE(
        file_exists(dir + "/config.json") && inner::load_run_config(dir).to_json() == cfg.to_json(),
        "'", dir,
        "' holds a run of another config (an earlier demo with other flags?); use "
        "another --out, or remove that directory to rerun the stage");
    if (file_exists(dir + "/summary.json")) {
      std::printf("finished run in %s reused\n", dir.c_str());
      return inner::read_summary(dir + "/summary.json");
    }
    opt.resume = true;
  }
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
  bool force = false;
  po::options_description desc("qsched demo flags");
  desc.add_options()("help,h", "show this help")("out", po::value(&out)->default_value(out),
                                                 "directory for the demo's runs (a rerun "
                                                 "continues it: finished stages are reused)")(
      "meta-steps", po::value(&meta_steps)->default_value(meta_steps),
      "outer steps of the controller's meta-training (0 skips stages 4 and 5)")(
      "force", po::bool_switch(&force),
      "use an --out (and stage directories in it) that qsched did not make; files qsched "
      "writes are overwritten, others left alone, nothing is deleted");
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
          "(e.g. --epochs 3 --subset 5000 for a quick look). Rerunning the same command\n"
          "continues: finished stages are reused, interrupted ones resumed."))
    return kExitOk;
  TORCH_CHECK_VALUE(meta_steps >= 0, "--meta-steps must be >= 0 (0 skips stages 4 and 5), got ",
                    meta_steps);
  inner::RunConfig fcfg = flags.resolve(json::parse(kFloatConfig));
  claim_output_dir(out, "demo", /*resume=*/false, force);
  std::printf("qsched demo: Fashion-MNIST, MLP 784-256-10; runs in %s/\n", out.c_str());
  std::printf("\n[1/5] float training, %lld epochs\n", static_cast<long long>(fcfg.train.epochs));
  std::fflush(stdout);
  try {
    json fs = run_stage(fcfg, out + "/float", force);
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
      results.emplace_back(st.name,
                           run_stage(inner::parse_run_config(j), out + "/" + st.name, force));
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
  std::printf("\n[4/5] meta-training a ternary-INQ schedule controller, %d outer ES steps\n",
              meta_steps);
  std::fflush(stdout);
  std::vector<std::string> meta_args = {"--out", out + "/meta", "--steps",
                                        std::to_string(meta_steps)};
  if (is_own_dir(out + "/meta", "meta-train") && file_exists(out + "/meta/meta_state.pt"))
    meta_args.push_back("--resume");  // continue (or reuse) the earlier demo's meta-training
  else
    meta_args.insert(meta_args.end(), {"--config", src + "/experiments/configs/meta_inq_mlp.json"});
  if (force) meta_args.push_back("--force");
  int rc = cmd_meta_train(meta_args);
  if (rc != kExitOk) return rc;
  std::printf("\n[5/5] learned vs hand-coded schedules on held-out networks, 5 paired seeds\n");
  std::fflush(stdout);
  json cmp = read_json_file(src + "/experiments/compare/inq_mlp_ternary.json");
  cmp["config"] = src + "/" + cmp["config"].get<std::string>();
  for (auto& e : cmp["schedules"])
    if (e.contains("controller")) e["controller"] = out + "/meta";
  atomic_write(out + "/compare_input.json", cmp.dump(2) + "\n");
  std::vector<std::string> cmp_args = {"--config", out + "/compare_input.json", "--out",
                                       out + "/compare"};
  if (force) cmp_args.push_back("--force");
  rc = cmd_compare(cmp_args);
  if (rc == kExitOk)
    std::printf("\nreport with plots: %s/compare/report.md; controller: %s/meta/\n", out.c_str(),
                out.c_str());
  return rc;
}

}  // namespace qsched::cli
