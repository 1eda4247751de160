// qsched meta-train: the outer loop of meta/outer_loop.h from the command line.
//
// Distributed (WORLD_SIZE > 1, see meta/distributed.h and `qsched launch`): rank 0 reads the
// config (or the run's meta_config.json and meta_state.pt on --resume), applies the flag
// overrides and broadcasts the result; the other ranks never read or write any file (on
// --resume they get rank 0's state as plain data, MetaTrainer::import_state), print nothing
// but errors, and exit with the same code as rank 0.

#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/io.h"
#include "inner/progress.h"
#include "inner/runtime.h"
#include "meta/collective.h"
#include "meta/distributed.h"
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

// Runs `read` on rank 0 and gives its result to every rank. A c10::ValueError on rank 0 (bad
// config, missing run directory) reaches the other ranks as a ValueError too, so every rank
// exits 2 with a line that says where the problem is.
std::string from_rank0(meta::Collective& coll, const std::function<std::string()>& read) {
  std::string mine;
  std::string error;
  if (coll.rank() == 0) {
    try {
      mine = "ok:" + read();
    } catch (const c10::ValueError& e) {
      error = e.what_without_backtrace();
      mine = "error:" + error;
    }
  }
  std::string got = coll.world_size() == 1 ? mine : coll.broadcast(mine, 0);
  if (coll.rank() == 0) {
    TORCH_CHECK_VALUE(error.empty(), error);
    return got.substr(3);
  }
  TORCH_CHECK_VALUE(got.rfind("ok:", 0) == 0, "rank 0: ", got.substr(6));
  return got.substr(3);
}

}  // namespace

int cmd_meta_train(const std::vector<std::string>& args) {
  std::string config, out;
  int64_t steps = -1;
  int threads = -1;
  bool resume = false, quiet = false, force = false;
  po::options_description desc("qsched meta-train flags");
  desc.add_options()("help,h", "show this help")("config", po::value(&config),
                                                 "meta config JSON (meta/task.h documents it)")(
      "out", po::value(&out), "output directory (created; or resumed with --resume)")(
      "steps", ranged<int64_t>(&steps, "steps", 1, 1000000),
      "outer steps in total (overrides the config's \"steps\")")(
      "threads", ranged(&threads, "threads", 1, 256),
      "population members evaluated in parallel (overrides \"threads\"; results do not depend "
      "on it)")("resume", po::bool_switch(&resume),
                "continue the run in --out from meta_state.pt with its meta_config.json")(
      "quiet", po::bool_switch(&quiet), "no progress bar, no per-step lines")(
      "force", po::bool_switch(&force),
      "write into --out even if it is not a qsched meta-train directory (files qsched writes "
      "are overwritten, others left alone, nothing is deleted)");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched meta-train --config FILE --out DIR [--steps N] [--threads N]\n"
                   "       qsched meta-train --resume --out DIR [--steps N]\n\n"
                   "Meta-trains a schedule controller with antithetic ES on a task family and\n"
                   "writes DIR/meta_metrics.jsonl, meta_state.pt, controller.pt and\n"
                   "controller.json. Ctrl-C saves the meta-state; --resume continues it exactly.\n"
                   "--out must not exist, be empty, or be a qsched meta-train directory without\n"
                   "a meta-state (anything else is refused unless --force)."))
    return kExitOk;
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  // WORLD_SIZE unset or 1: LocalCollective; otherwise the rendezvous happens here.
  std::unique_ptr<meta::Collective> coll = meta::make_collective_from_env();
  const bool rank0 = coll->rank() == 0;
  const std::string doc_text = from_rank0(*coll, [&] {
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
    meta::MetaConfig::from_json(doc);  // validated on rank 0 before anyone starts
    return doc.dump();
  });
  meta::MetaConfig cfg = meta::MetaConfig::from_json(json::parse(doc_text));
  set_threads(1);
  install_interrupt_handlers();
  // Ranks other than 0 have no run directory: they never read or write files. On --resume
  // rank 0 loads the checkpoint and sends the state as plain data (MetaTrainer::export_state),
  // not the archive.
  meta::MetaTrainer mt(cfg, rank0 ? out : std::string(), *coll);
  // Rank 0 checks the run directory first; its refusal stops every rank with its message.
  from_rank0(*coll, [&] {
    mt.start(resume, force);
    return std::string();
  });
  if (resume && coll->world_size() > 1) {
    std::string state = from_rank0(*coll, [&] { return mt.export_state(); });
    if (!rank0) mt.import_state(state);
  }
  const int64_t first = mt.steps_done();
  if (first >= cfg.steps) {
    if (rank0)
      std::printf("%s: already at step %lld of %lld; nothing to do\n", out.c_str(),
                  static_cast<long long>(first), static_cast<long long>(cfg.steps));
    return kExitOk;
  }
  quiet = quiet || !rank0;
  ProgressCallbacks cb(first, cfg.steps, quiet);
  bool done = mt.run(cfg.steps, &cb);
  cb.finish();
  mt.save_checkpoint();
  mt.save_controller();
  if (!done) {
    if (rank0)
      std::fprintf(stderr,
                   "interrupted: meta-state of step %lld saved in %s/meta_state.pt; "
                   "continue with qsched meta-train --resume --out %s\n",
                   static_cast<long long>(mt.steps_done()), out.c_str(), out.c_str());
    return kExitInterrupted;
  }
  if (!rank0) return kExitOk;
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
