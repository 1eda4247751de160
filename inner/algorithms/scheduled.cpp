#include "inner/algorithms/scheduled.h"

#include <algorithm>
#include <cctype>

#include "inner/io.h"
#include "schedules/factory.h"

namespace qsched::inner {

std::vector<bool> excluded_layers(const NetworkImpl& net, const std::vector<std::string>& exclude,
                                  const std::string& section) {
  const int64_t L = net.num_quant_layers();
  const auto& infos = net.quant_layers();
  std::vector<bool> excluded(L, false);
  for (const auto& e : exclude) {
    int64_t i = -1;
    if (e == "first") {
      i = 0;
    } else if (e == "last") {
      i = L - 1;
    } else if (!e.empty() && std::all_of(e.begin(), e.end(), ::isdigit)) {
      TORCH_CHECK_VALUE(e.size() <= 9 && std::stoll(e) < L, "config: ", section,
                        ".exclude names layer ", e, " but the network has ", L,
                        " quantizable layers (0..", L - 1, ")");
      i = std::stoll(e);
    } else {
      for (const auto& info : infos)
        if (info.name == e) i = info.index;
      std::string names;
      for (const auto& info : infos) names += (names.empty() ? "" : ", ") + info.name;
      TORCH_CHECK_VALUE(i >= 0, "config: ", section, ".exclude names layer '", e,
                        "', which is not a quantizable layer of this network (", names, ")");
    }
    excluded[i] = true;
  }
  return excluded;
}

void ScheduledAlgorithm::attach(Trainer& t) {
  const ScheduledOptions& o = scheduled_options();
  auto& net = *t.network();
  std::vector<bool> excluded = excluded_layers(net, o.exclude, o.section);
  scheduled_.clear();
  float_layers_.clear();
  for (int64_t i = 0; i < net.num_quant_layers(); ++i) {
    if (excluded[i])
      float_layers_.push_back(net.quant_layers()[i].name);
    else
      scheduled_.push_back(i);
  }
  TORCH_CHECK_VALUE(!scheduled_.empty(), "config: ", o.section,
                    ".exclude leaves no layer to quantize");
  setup_units(t, scheduled_);
  const size_t n = scheduled_.size();
  std::vector<double> depth;
  for (size_t j = 0; j < n; ++j) depth.push_back(n == 1 ? 0.0 : static_cast<double>(j) / (n - 1));
  const int64_t epochs = t.config().train.epochs;
  TORCH_CHECK_VALUE(o.pretrain_epochs < epochs, "config: ", o.section,
                    ".pretrain_epochs = ", o.pretrain_epochs,
                    ". Violated constraint: pretrain_epochs < train.epochs (", epochs, ")");
  const std::string what = "config: " + o.section + ".schedule";
  driver_ = std::make_unique<ScheduleDriver>(
      schedule_ ? std::move(schedule_) : sched::make_schedule(o.schedule, o.quantity, what),
      o.pretrain_epochs, epochs - o.pretrain_epochs, static_cast<int64_t>(n), depth, what);
  if (!o.init_checkpoint.empty())
    load_model_weights(net, o.init_checkpoint, "config: " + o.section + ".init_checkpoint");
}

void ScheduledAlgorithm::on_epoch_start(Trainer& t, int64_t epoch) {
  if (epoch < driver_->start()) return;
  if (!started()) start(t);
  const auto& h = t.history();
  double train_loss = h.empty() ? 0.0 : h.back()["train_loss"].get<double>();
  double val_loss = h.empty() ? 0.0 : h.back()["val_loss"].get<double>();
  json obs = json::object();
  if (!driver_->schedule().is_static() && !driver_->recorded(epoch)) {
    obs["layers"] = json::array();
    for (size_t j = 0; j < scheduled_.size(); ++j) obs["layers"].push_back(observe_unit(t, j));
  }
  apply_values(t, epoch, driver_->at(epoch, train_loss, val_loss, std::move(obs)));
}

void ScheduledAlgorithm::write_artifacts(Trainer&, const std::string& out_dir) {
  if (driver_->table().epochs() == 0) return;
  atomic_write(out_dir + "/schedule.json", driver_->table().to_json().dump() + "\n");
}

void ScheduledAlgorithm::save(torch::serialize::OutputArchive& a) const {
  a.write("record", c10::IValue(driver_->record_json()));
  save_state(a);
}

void ScheduledAlgorithm::load(torch::serialize::InputArchive& a) {
  c10::IValue v;
  a.read("record", v);
  driver_->restore_record(v.toStringRef());
  load_state(a);
}

}  // namespace qsched::inner
