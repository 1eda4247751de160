#include "meta/apply.h"

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/base/json_reader.h"
#include "inner/inq/inq.h"
#include "inner/io.h"
#include "schedules/factory.h"

namespace qsched::meta {

namespace {

/// Decorates the run's algorithm: forwards every hook, and adds the controller's recurrent
/// state to the checkpoint so that a resumed apply continues the same trajectory.
class ControllerCheckpointing : public inner::Algorithm {
 public:
  ControllerCheckpointing(std::unique_ptr<inner::Algorithm> inner, ControllerSchedule* schedule)
      : inner_(std::move(inner)), schedule_(schedule) {}

  std::string name() const override { return inner_->name(); }
  void attach(inner::Trainer& t) override { inner_->attach(t); }
  void on_epoch_start(inner::Trainer& t, int64_t e) override { inner_->on_epoch_start(t, e); }
  void before_step(inner::Trainer& t) override { inner_->before_step(t); }
  void after_step(inner::Trainer& t) override { inner_->after_step(t); }
  void before_eval(inner::Trainer& t) override { inner_->before_eval(t); }
  void after_eval(inner::Trainer& t) override { inner_->after_eval(t); }
  void finish(inner::Trainer& t, json& summary) override {
    inner_->finish(t, summary);
    summary["schedule_source"] = "controller";
  }
  json epoch_extra(inner::Trainer& t) override { return inner_->epoch_extra(t); }
  void write_artifacts(inner::Trainer& t, const std::string& dir) override {
    inner_->write_artifacts(t, dir);
  }
  void save(torch::serialize::OutputArchive& a) const override {
    inner_->save(a);
    auto h = schedule_->hidden();
    a.write("controller_hidden_defined", torch::tensor(h.defined() ? 1 : 0));
    a.write("controller_hidden", h.defined() ? h : torch::zeros({0}));
  }
  void load(torch::serialize::InputArchive& a) override {
    inner_->load(a);
    torch::Tensor defined, h;
    try {
      a.read("controller_hidden_defined", defined);
      a.read("controller_hidden", h);
    } catch (const c10::Error&) {
      TORCH_CHECK_VALUE(false,
                        "checkpoint holds no controller state (not written by qsched apply)");
    }
    if (defined.item<int64_t>()) schedule_->set_hidden(h);
  }

 private:
  std::unique_ptr<inner::Algorithm> inner_;
  ControllerSchedule* schedule_;
};

json config_schedule(const inner::RunConfig& cfg) {
  return inner::algorithm_spec(cfg.algorithm).schedule_of(cfg.section());
}

}  // namespace

std::function<std::unique_ptr<inner::Algorithm>(const inner::RunConfig&)> controller_algorithm(
    const SavedController& saved, const std::string& base, const inner::RunConfig& cfg) {
  inner::scheduled_algorithm(cfg.algorithm, "config: algorithm (scheduled by a controller)");
  TORCH_CHECK_VALUE(cfg.algorithm == saved.algorithm, "controller was meta-trained for ",
                    saved.algorithm, " but the config's algorithm is ", cfg.algorithm,
                    " (a controller only schedules the algorithm it was trained for)");
  TORCH_CHECK_VALUE(base == "meta" || base == "config", "--base = \"", base,
                    "\". Violated constraint: \"meta\" or \"config\"");
  json base_spec = base == "meta" ? saved.base_schedule : config_schedule(cfg);
  return [saved, base_spec](const inner::RunConfig& c) -> std::unique_ptr<inner::Algorithm> {
    auto sched = std::make_unique<ControllerSchedule>(
        saved.controller,
        sched::make_schedule(base_spec, saved.quantity, "controller base schedule"));
    ControllerSchedule* raw = sched.get();
    return std::make_unique<ControllerCheckpointing>(inner::make_algorithm(c, std::move(sched)),
                                                     raw);
  };
}

json ApplyRecord::to_json() const {
  return {{"controller", controller}, {"fingerprint", fingerprint}, {"base", base}};
}

ApplyRecord ApplyRecord::load(const std::string& run_dir) {
  const std::string path = run_dir + "/apply.json";
  TORCH_CHECK_VALUE(file_exists(path), "'", path,
                    "' does not exist (not a qsched apply run, or one of an older qsched: "
                    "its --base and controller are unknown)");
  json j = read_json_file(path);
  JsonReader r(j, "", "'" + path + "'");
  ApplyRecord a;
  a.controller = r.get<std::string>("controller", "");
  a.fingerprint = r.get<std::string>("fingerprint", "");
  a.base = r.get<std::string>("base", "");
  r.finish();
  TORCH_CHECK_VALUE(!a.fingerprint.empty() && (a.base == "meta" || a.base == "config"), "'", path,
                    "' is corrupt (needs a fingerprint and base \"meta\" or \"config\")");
  return a;
}

void ApplyRecord::save(const std::string& run_dir) const {
  atomic_write(run_dir + "/apply.json", to_json().dump(2) + "\n");
}

inner::RunOutcome apply_controller(const inner::RunConfig& cfg, const ApplyOptions& opt) {
  SavedController saved = load_controller(opt.controller);
  inner::RunOptions ro = opt.run;
  ro.kind = "apply";
  ro.make_algorithm = controller_algorithm(saved, opt.base, cfg);
  return inner::run_training(cfg, ro);
}

}  // namespace qsched::meta
