// qsched meta-train: the outer loop of meta/outer_loop.h from the command line.
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/io.h"
#include "inner/progress.h"
#include "inner/runtime.h"
#include "meta/collective.h"
#include "meta/outer_loop.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {

std::string fmt(const json& v, const char* f = "%.4f") {
  if (!v.is_number()) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, v.get<double>());
  return b;
}

struct ProgressCallbacks : meta::MetaCallbacks {
  ProgressCallbacks(int64_t first, int64_t until, bool quiet)
      : first_(first), until_(until), quiet_(quiet), bar_("meta-train", until - first, !quiet) {}
  void on_step(const json& row) override {
    const int64_t k = row["step"].get<int64_t>();
    const bool mg = row.contains("meta_loss");  // metagrad rows: no whole-run fitness
    std::string line =
        "step " + std::to_string(k) + "/" + std::to_string(until_) +
        (mg ? ": meta-loss " + fmt(row["meta_loss"]) + ", hard loss " + fmt(row["hard_loss"]) +
                  ", acc " + fmt(row["mean_acc"])
            : ": fitness mean " + fmt(row["mean_fitness"]) + " best " + fmt(row["best_fitness"]) +
                  ", acc " + fmt(row["mean_acc"]) + " (base " + fmt(row["base_acc"]) + ")") +
        ", |g| " + fmt(row["grad_norm"], "%.3g") + ", " + fmt(row["seconds"], "%.1f") + "s";
    if (row["diverged"].get<int64_t>() > 0)
      line += ", " + std::to_string(row["diverged"].get<int64_t>()) + " diverged runs";
    if (row.contains("val_fitness"))
      line += " | validation fitness " + fmt(row["val_fitness"]) + ", acc " + fmt(row["val_acc"]) +
              " (base " + fmt(row["val_base_acc"]) + ")";
    if (!quiet_) bar_.line(line);
    bar_.update(k - first_,
                mg ? "meta-loss " + fmt(row["meta_loss"]) : "fitness " + fmt(row["mean_fitness"]));
  }
  void finish() { bar_.finish(); }

 private:
  int64_t first_, until_;
  bool quiet_;
  Progress bar_;
};

}  // namespace

int cmd_meta_train(const std::vector<std::string>& args) {
  std::string config, out;
  int64_t steps = -1;
  int threads = -1;
  bool resume = false, quiet = false;
  po::options_description desc("qsched meta-train flags");
  desc.add_options()("help,h", "show this help")("config", po::value(&config),
                                                 "meta config JSON (meta/task.h documents it)")(
      "out", po::value(&out), "output directory (created; or resumed with --resume)")(
      "steps", po::value(&steps), "outer steps in total (overrides the config's \"steps\")")(
      "threads", po::value(&threads),
      "population members evaluated in parallel (overrides \"threads\"; results do not depend "
      "on it)")("resume", po::bool_switch(&resume),
                "continue the run in --out from meta_state.pt with its meta_config.json")(
      "quiet", po::bool_switch(&quiet), "no progress bar, no per-step lines");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched meta-train --config FILE --out DIR [--steps N] [--threads N]\n"
                   "       qsched meta-train --resume --out DIR [--steps N]\n\n"
                   "Meta-trains a schedule controller with antithetic ES on a task family and\n"
                   "writes DIR/meta_metrics.jsonl, meta_state.pt, controller.pt and\n"
                   "controller.json. Ctrl-C saves the meta-state; --resume continues it exactly."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  TORCH_CHECK_VALUE(steps == -1 || steps >= 1, "--steps ", steps,
                    ". Violated constraint: --steps >= 1");
  TORCH_CHECK_VALUE(threads == -1 || (threads >= 1 && threads <= 256), "--threads ", threads,
                    ". Violated constraint: 1 <= --threads <= 256");
  json doc;
  if (resume) {
    TORCH_CHECK_VALUE(config.empty(),
                      "--resume uses the run's saved meta_config.json; drop --config");
    TORCH_CHECK_VALUE(file_exists(out + "/meta_config.json"), "--resume: '", out,
                      "/meta_config.json' does not exist (not a meta-training directory)");
    doc = read_json_file(out + "/meta_config.json");
  } else {
    TORCH_CHECK_VALUE(!config.empty(),
                      "missing --config FILE (see experiments/configs/meta_*.json)");
    doc = read_json_file(config);
  }
  if (steps > 0) doc["steps"] = steps;
  if (threads > 0) doc["threads"] = threads;
  meta::MetaConfig cfg = meta::MetaConfig::from_json(doc);
  set_threads(1);
  install_interrupt_handlers();
  meta::LocalCollective coll;
  meta::MetaTrainer mt(cfg, out, coll);
  mt.start(resume);
  const int64_t first = mt.steps_done();
  if (first >= cfg.steps) {
    std::printf("%s: already at step %lld of %lld; nothing to do\n", out.c_str(),
                static_cast<long long>(first), static_cast<long long>(cfg.steps));
    return kExitOk;
  }
  ProgressCallbacks cb(first, cfg.steps, quiet);
  bool done = mt.run(cfg.steps, &cb);
  cb.finish();
  mt.save_checkpoint();
  mt.save_controller();
  if (!done) {
    std::fprintf(stderr,
                 "interrupted: meta-state of step %lld saved in %s/meta_state.pt; "
                 "continue with qsched meta-train --resume --out %s\n",
                 static_cast<long long>(mt.steps_done()), out.c_str(), out.c_str());
    return kExitInterrupted;
  }
  const auto& h = mt.history();
  std::string val = "-";
  for (auto it = h.rbegin(); it != h.rend(); ++it)
    if (it->contains("val_fitness")) {
      val = fmt((*it)["val_fitness"]);
      break;
    }
  std::printf(
      "%s: %lld outer steps; last mean fitness %s, last validation fitness %s "
      "(1 = base schedule, lower is better); controller in %s/controller.json\n",
      out.c_str(), static_cast<long long>(mt.steps_done()),
      fmt(h.back().value("mean_fitness", json())).c_str(), val.c_str(), out.c_str());
  return kExitOk;
}

}  // namespace qsched::cli
