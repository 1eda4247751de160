#include "inner/run.h"

#include <cstdio>
#include <sstream>

#include "inner/algorithms/registry.h"
#include "inner/base/json_text.h"
#include "inner/io.h"
#include "inner/progress.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"

namespace qsched::inner {

namespace {

std::string metrics_text(const std::vector<json>& rows) {
  std::string s;
  for (const auto& r : rows) s += r.dump() + "\n";
  return s;
}

/// Progress, metrics.jsonl and per-epoch checkpoints, outside the training loop.
class RunCallbacks : public TrainerCallbacks {
 public:
  RunCallbacks(const RunOptions& opt, int64_t total_epochs, int64_t start_epoch,
               int64_t steps_per_epoch)
      : opt_(opt),
        total_epochs_(total_epochs),
        start_units_(start_epoch * steps_per_epoch),
        bar_("train", (total_epochs - start_epoch) * steps_per_epoch, opt.progress && !opt.quiet) {}

  void on_step(Trainer& t, int64_t epoch, int64_t step, int64_t steps) override {
    char status[64];
    std::snprintf(status, sizeof status, "epoch %lld/%lld", static_cast<long long>(epoch + 1),
                  static_cast<long long>(total_epochs_));
    bar_.update(epoch * steps + step - start_units_, status);
  }

  void on_epoch_end(Trainer& t, const EpochMetrics& m) override {
    atomic_write(opt_.out_dir + "/metrics.jsonl", metrics_text(t.history()));
    t.algorithm().write_artifacts(t, opt_.out_dir);
    t.save_checkpoint(opt_.out_dir + "/checkpoint.pt");
    if (opt_.quiet) return;
    char line[256];
    std::snprintf(line, sizeof line,
                  "epoch %3lld/%lld  lr %.4g  train loss %.4f acc %.4f  val loss %.4f acc %.4f  "
                  "%.1fs",
                  static_cast<long long>(m.epoch), static_cast<long long>(total_epochs_), m.lr,
                  m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.seconds);
    bar_.line(line);
  }
  void finish() { bar_.finish(); }

 private:
  const RunOptions& opt_;
  int64_t total_epochs_;
  int64_t start_units_;
  Progress bar_;
};

}  // namespace

RunConfig load_run_config(const std::string& dir) {
  std::string path = dir + "/config.json";
  TORCH_CHECK_VALUE(file_exists(path), "cannot resume: '", path,
                    "' does not exist (is --out the directory of an earlier run?)");
  return parse_run_config(read_json_file(path));
}

RunOutcome run_training(const RunConfig& cfg, const RunOptions& opt) {
  TORCH_CHECK_VALUE(!opt.out_dir.empty(), "no output directory given (--out DIR)");
  // From here on a Ctrl-C is an orderly interruption (checked after start-up and every step).
  install_interrupt_handlers();
  claim_output_dir(opt.out_dir, opt.kind, opt.resume, opt.force);
  set_threads(cfg.threads);
  auto device = parse_device(cfg.device);
  std::string ckpt = opt.out_dir + "/checkpoint.pt";
  if (opt.resume) {
    TORCH_CHECK_VALUE(file_exists(ckpt), "cannot resume: '", ckpt, "' does not exist");
  } else {
    TORCH_CHECK_VALUE(!file_exists(ckpt) && !file_exists(opt.out_dir + "/summary.json"),
                      "output directory '", opt.out_dir,
                      "' already holds a run; use --resume to continue it or choose another --out");
  }

  auto splits = load_data(cfg, device);
  auto alg = opt.make_algorithm ? opt.make_algorithm(cfg) : make_algorithm(cfg);
  Trainer trainer(cfg, std::move(splits), std::move(alg));
  if (opt.resume) trainer.load_checkpoint(ckpt);
  if (opt.stop.stop_requested()) {  // a stop during start-up: nothing trained, nothing written
    const std::string what =
        opt.resume ? "the checkpoint " + ckpt + " is unchanged; continue with --resume"
                   : "no checkpoint was written; start the run again (same command, not --resume)";
    std::fprintf(stderr, "interrupted during start-up: nothing was trained; %s\n", what.c_str());
    return RunOutcome{Termination::kInterrupted, json()};
  }
  if (!opt.resume) atomic_write(opt.out_dir + "/config.json", cfg.to_json().dump(2) + "\n");
  // Metrics of finished epochs as the checkpoint knows them (a kill between checkpoint and
  // metrics write loses nothing).
  atomic_write(opt.out_dir + "/metrics.jsonl", metrics_text(trainer.history()));

  int64_t steps =
      data::Batcher(trainer.data().train, cfg.train.batch_size, false, 0).batches_per_epoch();
  RunCallbacks cb(opt, cfg.train.epochs, trainer.epoch(), steps);
  if (!opt.quiet && opt.resume)
    std::fprintf(stderr, "resuming at epoch %lld\n", static_cast<long long>(trainer.epoch()));

  RunOutcome out;
  out.termination = trainer.run(cfg.train.epochs, &cb, opt.stop);
  cb.finish();
  if (out.termination == Termination::kInterrupted) {
    trainer.save_checkpoint(ckpt);
    std::fprintf(stderr, "interrupted: checkpoint saved in %s; continue with --resume\n",
                 ckpt.c_str());
    return out;
  }
  out.summary = trainer.summary(out.termination);
  trainer.algorithm().write_artifacts(trainer, opt.out_dir);
  trainer.save_checkpoint(ckpt);
  atomic_write(opt.out_dir + "/summary.json", out.summary.dump(2) + "\n");
  return out;
}

json read_summary(const std::string& path) {
  json s = read_json_file(path);
  auto bad = [&](const std::string& key, const std::string& rule) {
    TORCH_CHECK_VALUE(false, "summary file '", path, "': ", key, " ", rule);
  };
  if (!s.is_object()) bad("document", "must be a JSON object");
  for (const char* k : {"algorithm", "termination"})
    if (!s.contains(k) || !s[k].is_string()) bad(k, "must be a string");
  for (const char* k : {"test_acc", "val_acc", "seconds"})
    if (!s.contains(k) || !s[k].is_number()) bad(k, "must be a number");
  for (const char* k : {"test_loss", "val_loss"})
    if (!s.contains(k) || !(s[k].is_number() || s[k].is_null())) bad(k, "must be a number or null");
  if (!s.contains("epochs") || !s["epochs"].is_number_integer())
    bad("epochs", "must be an integer");
  for (const char* k : {"on_grid", "quantized"})
    if (s.contains(k) && !s[k].is_boolean()) bad(k, "must be a boolean when present");
  return s;
}

std::vector<EpochPoint> read_val_curve(const std::string& path) {
  std::vector<EpochPoint> rows;
  if (!file_exists(path)) return rows;
  std::istringstream in(read_whole_file(path));
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    const std::string what = "metrics file '" + path + "' line " + std::to_string(n);
    const json r = parse_json_text(line, what);
    TORCH_CHECK_VALUE(r.is_object() && r.contains("epoch") && r["epoch"].is_number_integer() &&
                          r.contains("val_acc") && r["val_acc"].is_number(),
                      what,
                      ": expected an object with an integer \"epoch\" and a number "
                      "\"val_acc\"");
    rows.push_back({r["epoch"].get<int64_t>(), r["val_acc"].get<double>()});
  }
  return rows;
}

}  // namespace qsched::inner
