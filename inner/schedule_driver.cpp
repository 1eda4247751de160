#include "inner/schedule_driver.h"

#include <nlohmann/json.hpp>

namespace qsched::inner {

ScheduleDriver::ScheduleDriver(std::unique_ptr<sched::Schedule> s, int64_t start, int64_t epochs,
                               int64_t layers, std::vector<double> rel_depth, std::string what)
    : schedule_(std::move(s)),
      start_(start),
      epochs_(epochs),
      layers_(layers),
      rel_depth_(std::move(rel_depth)),
      what_(std::move(what)) {
  TORCH_CHECK_VALUE(epochs_ >= 1, what_, ": the quantization phase has ", epochs_,
                    " epochs. Violated constraint: at least 1 (train.epochs > pretrain epochs)");
  if (schedule_->is_static()) sched::materialize(*schedule_, epochs_, layers_, what_);
}

std::vector<double> ScheduleDriver::at(int64_t epoch, double train_loss, double val_loss,
                                       json observations) {
  int64_t t = epoch - start_;
  TORCH_CHECK(t >= 0 && t < epochs_, "ScheduleDriver::at: epoch ", epoch, " outside [", start_,
              ", ", start_ + epochs_, ")");
  if (t < static_cast<int64_t>(record_.size())) return record_[t];
  TORCH_CHECK(t == static_cast<int64_t>(record_.size()), "ScheduleDriver::at: epoch ", epoch,
              " skips epochs");
  sched::ScheduleContext ctx;
  ctx.epoch = t;
  ctx.total_epochs = epochs_;
  ctx.num_layers = layers_;
  ctx.rel_depth = rel_depth_;
  ctx.previous = record_.empty() ? std::vector<double>{} : record_.back();
  ctx.train_loss = train_loss;
  ctx.val_loss = val_loss;
  ctx.observations = std::move(observations);
  auto v = schedule_->values(ctx);
  TORCH_CHECK_VALUE(static_cast<int64_t>(v.size()) == layers_, what_, ": gave ", v.size(),
                    " values for ", layers_, " layers");
  sched::check_values(schedule_->quantity(), v, ctx.previous, t + 1 == epochs_, t, what_);
  record_.push_back(v);
  return v;
}

const std::vector<double>& ScheduleDriver::last() const {
  static const std::vector<double> kEmpty;
  return record_.empty() ? kEmpty : record_.back();
}

sched::ScheduleTable ScheduleDriver::table() const {
  sched::ScheduleTable t;
  t.quantity = schedule_->quantity();
  t.values = record_;
  return t;
}

std::string ScheduleDriver::record_json() const { return nlohmann::json(record_).dump(); }

void ScheduleDriver::restore_record(const std::string& text) {
  record_ = nlohmann::json::parse(text).get<std::vector<std::vector<double>>>();
  TORCH_CHECK_VALUE(static_cast<int64_t>(record_.size()) <= epochs_,
                    "checkpoint holds a schedule record longer than the run");
}

}  // namespace qsched::inner
