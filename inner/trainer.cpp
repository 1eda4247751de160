#include "inner/trainer.h"

#include <chrono>
#include <cmath>
#include <mutex>
#include <sstream>

#include "inner/differentiable.h"
#include "inner/io.h"
#include "inner/runtime.h"

namespace qsched::inner {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// The classes of the network are taken from the training data.
Network build_for(const RunConfig& cfg, const data::Splits& d) {
  TORCH_CHECK_VALUE(d.train.size() > 0, "training data is empty");
  InputShape in{d.train.images.size(1), d.train.images.size(2), d.train.images.size(3)};
  return build_network(cfg.network, in, d.train.num_classes);
}

/// Bumped whenever the checkpoint layout changes.
constexpr int64_t kCheckpointVersion = 1;
}  // namespace

std::string to_string(Termination t) {
  switch (t) {
    case Termination::kCompleted:
      return "completed";
    case Termination::kInterrupted:
      return "interrupted";
    case Termination::kDiverged:
      return "diverged";
  }
  return "?";
}

json EpochMetrics::to_json() const {
  json j = {{"epoch", epoch},           {"lr", lr},
            {"train_loss", train_loss}, {"train_acc", train_acc},
            {"val_loss", val_loss},     {"val_acc", val_acc},
            {"seconds", seconds}};
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

EvalResult evaluate(NetworkImpl& net, const data::Dataset& d, int64_t batch_size) {
  torch::NoGradGuard ng;
  bool was_training = net.is_training();
  net.eval();
  EvalResult r;
  torch::Tensor loss_sum = torch::zeros({}, torch::kDouble);
  torch::Tensor correct = torch::zeros({}, torch::kLong);
  for (int64_t i = 0; i < d.size(); i += batch_size) {
    int64_t j = std::min(d.size(), i + batch_size);
    auto x = d.images.slice(0, i, j), y = d.labels.slice(0, i, j);
    auto logits = net.forward(x);
    loss_sum +=
        torch::nn::functional::cross_entropy(
            logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .to(torch::kCPU, torch::kDouble);
    correct += logits.argmax(1).eq(y).sum().to(torch::kCPU);
  }
  net.train(was_training);
  r.n = d.size();
  if (r.n > 0) {
    r.loss = loss_sum.item<double>() / static_cast<double>(r.n);
    r.acc = static_cast<double>(correct.item<int64_t>()) / static_cast<double>(r.n);
  }
  return r;
}

namespace {

/// Module::load replaces each tensor by the stored one whatever its shape (Tensor::set_), so
/// a checkpoint of another architecture would load "successfully": compare every parameter's
/// and buffer's shape with what the network had before.
void load_same_shapes(torch::nn::Module& net, torch::serialize::InputArchive& archive) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> before;
  for (const auto& p : net.named_parameters())
    before.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : net.named_buffers()) before.emplace_back(b.key(), b.value().sizes().vec());
  net.load(archive);
  size_t i = 0;
  auto check = [&](const std::string& name, const torch::Tensor& t) {
    const auto& [key, shape] = before[i++];
    TORCH_CHECK_VALUE(key == name && t.sizes().vec() == shape, "tensor '", key, "' has shape ",
                      c10::IntArrayRef(shape), " in this network but ", t.sizes(), " in the file");
  };
  for (const auto& p : net.named_parameters()) check(p.key(), p.value());
  for (const auto& b : net.named_buffers()) check(b.key(), b.value());
}

}  // namespace

void load_model_weights(NetworkImpl& net, const std::string& path, const std::string& what) {
  TORCH_CHECK_VALUE(file_exists(path), what, " '", path, "' does not exist");
  ArchiveReader r(path, "checkpoint", what);
  torch::serialize::InputArchive model;
  try {
    r.archive().read("model", model);
    load_same_shapes(net, model);
  } catch (const std::exception& e) {
    r.fail("does not hold a model of this network (" + one_line(e) + ")");
  }
}

Trainer::Trainer(RunConfig cfg, data::Splits data, std::unique_ptr<Algorithm> alg)
    : cfg_(std::move(cfg)),
      data_(std::move(data)),
      alg_(alg ? std::move(alg) : std::make_unique<Algorithm>()),
      device_(parse_device(cfg_.device)) {
  {
    // Initialization is the only use of torch's global generator: serialized, so trainers can
    // be built and run concurrently in threads (meta-training populations) and stay
    // deterministic. Everything random during training uses generators derived from the seed.
    std::lock_guard<std::mutex> lock(global_generator_mutex());
    torch::manual_seed(data::derive_seed(cfg_.seed, 0x1417));
    net_ = build_for(cfg_, data_);
  }
  net_->to(device_);
  make_optimizer();
  batcher_ = std::make_unique<data::Batcher>(data_.train, cfg_.train.batch_size, true,
                                             data::derive_seed(cfg_.seed, 0xba7c));
  alg_->attach(*this);
}

void Trainer::make_optimizer() {
  const auto& o = cfg_.train.optimizer;
  if (o.name == "sgd") {
    opt_ =
        std::make_unique<torch::optim::SGD>(net_->parameters(), torch::optim::SGDOptions(o.lr)
                                                                    .momentum(o.momentum)
                                                                    .nesterov(o.nesterov)
                                                                    .weight_decay(o.weight_decay));
  } else {
    opt_ =
        std::make_unique<torch::optim::Adam>(net_->parameters(), torch::optim::AdamOptions(o.lr)
                                                                     .betas({o.beta1, o.beta2})
                                                                     .eps(o.eps)
                                                                     .weight_decay(o.weight_decay));
  }
}

void Trainer::reset_optimizer() {
  double lr = opt_->param_groups().at(0).options().get_lr();
  make_optimizer();
  set_lr(lr);
}

void Trainer::set_lr(double lr) {
  for (auto& g : opt_->param_groups()) g.options().set_lr(lr);
}

EvalResult Trainer::eval_on(const data::Dataset& d) {
  alg_->before_eval(*this);
  EvalResult r = evaluate(*net_, d, cfg_.train.eval_batch_size);
  alg_->after_eval(*this);
  return r;
}

std::unique_ptr<DifferentiableRun> Algorithm::differentiable(Trainer&) { return nullptr; }

Termination Trainer::run(int64_t until, TrainerCallbacks* cb, const StopToken& stop) {
  TORCH_CHECK(until <= cfg_.train.epochs, "Trainer::run: until = ", until, " > epochs");
  net_->train();
  const int64_t steps = batcher_->batches_per_epoch();
  while (epoch_ < until) {
    auto t_epoch = Clock::now();
    if (step_in_epoch_ == 0) alg_->on_epoch_start(*this, epoch_);  // may reset the LR schedule
    double lr = lr_at_epoch(cfg_.train, epoch_ - lr_epoch_offset_);
    set_lr(lr);
    batcher_->start_epoch(epoch_);
    torch::Tensor x, y;
    for (int64_t s = 0; s < step_in_epoch_; ++s) batcher_->next(x, y);  // resume mid-epoch
    auto loss_acc = torch::zeros({}, torch::kDouble);
    auto correct_acc = torch::zeros({}, torch::kLong);
    int64_t seen = 0;
    while (batcher_->next(x, y)) {
      opt_->zero_grad();
      auto logits = net_->forward(x);
      auto loss = torch::nn::functional::cross_entropy(logits, y);
      loss.backward();
      alg_->before_step(*this);
      opt_->step();
      alg_->after_step(*this);
      loss_acc += loss.detach().to(torch::kCPU, torch::kDouble) * y.size(0);
      correct_acc += logits.detach().argmax(1).eq(y).sum().to(torch::kCPU);
      seen += y.size(0);
      ++step_in_epoch_;
      if (cb) cb->on_step(*this, epoch_, step_in_epoch_, steps);
      if (stop.stop_requested() && step_in_epoch_ < steps) {
        loss_sum_ += loss_acc.item<double>();
        correct_ += correct_acc.item<int64_t>();
        seen_ += seen;
        epoch_seconds_ += since(t_epoch);
        seconds_ += since(t_epoch);
        return Termination::kInterrupted;
      }
    }
    loss_sum_ += loss_acc.item<double>();
    correct_ += correct_acc.item<int64_t>();
    seen_ += seen;
    EpochMetrics m;
    m.epoch = epoch_ + 1;
    m.lr = lr;
    m.train_loss = loss_sum_ / static_cast<double>(std::max<int64_t>(seen_, 1));
    m.train_acc = static_cast<double>(correct_) / static_cast<double>(std::max<int64_t>(seen_, 1));
    auto val = eval_on(data_.val);
    m.val_loss = val.loss;
    m.val_acc = val.acc;
    m.extra = alg_->epoch_extra(*this);
    epoch_seconds_ += since(t_epoch);
    seconds_ += since(t_epoch);
    m.seconds = epoch_seconds_;
    history_.push_back(m.to_json());
    ++epoch_;
    step_in_epoch_ = 0;
    loss_sum_ = 0;
    correct_ = seen_ = 0;
    epoch_seconds_ = 0;
    if (cb) cb->on_epoch_end(*this, m);
    if (!std::isfinite(m.train_loss) || !std::isfinite(m.val_loss)) return Termination::kDiverged;
    if (stop.stop_requested() && epoch_ < until) return Termination::kInterrupted;
  }
  return Termination::kCompleted;
}

json Trainer::summary(Termination term) {
  json s;
  if (term == Termination::kCompleted && epoch_ == cfg_.train.epochs) alg_->finish(*this, s);
  auto test = eval_on(data_.test);
  auto val = eval_on(data_.val);
  s["algorithm"] = alg_->name();
  if (!s.contains("quantized")) s["quantized"] = false;
  s["termination"] = to_string(term);
  s["test_acc"] = test.acc;
  s["test_loss"] = test.loss;
  s["val_acc"] = val.acc;
  s["val_loss"] = val.loss;
  s["epochs"] = epoch_;
  s["seconds"] = seconds_;
  s["parameters"] = count_parameters(*net_);
  s["train_samples"] = data_.train.size();
  s["seed"] = cfg_.seed;
  return s;
}

void Trainer::save_checkpoint(const std::string& path) const {
  torch::serialize::OutputArchive a;
  a.write("version", c10::IValue(kCheckpointVersion));
  a.write("config", c10::IValue(cfg_.to_json().dump()));
  torch::serialize::OutputArchive model, optim, alg;
  net_->save(model);
  a.write("model", model);
  opt_->save(optim);
  a.write("optimizer", optim);
  alg_->save(alg);
  a.write("algorithm", alg);
  // The last step's gradients: learned schedules observe their norm at the next epoch start,
  // so a run resumed at an epoch boundary must see the same values.
  torch::serialize::OutputArchive grads;
  for (const auto& p : net_->named_parameters())
    if (p.value().grad().defined()) grads.write(p.key(), p.value().grad());
  a.write("grads", grads);
  a.write("epoch", c10::IValue(epoch_));
  a.write("step_in_epoch", c10::IValue(step_in_epoch_));
  a.write("loss_sum", c10::IValue(loss_sum_));
  a.write("correct", c10::IValue(correct_));
  a.write("seen", c10::IValue(seen_));
  a.write("epoch_seconds", c10::IValue(epoch_seconds_));
  a.write("lr_epoch_offset", c10::IValue(lr_epoch_offset_));
  a.write("seconds", c10::IValue(seconds_));
  json hist = history_;
  a.write("history", c10::IValue(hist.dump()));
  write_archive(path, a, "checkpoint");
}

void Trainer::load_checkpoint(const std::string& path) {
  TORCH_CHECK_VALUE(file_exists(path), "checkpoint '", path, "' does not exist");
  ArchiveReader r(path, "checkpoint", "checkpoint", device_);
  auto& a = r.archive();
  try {
    r.check_version(kCheckpointVersion);
    json saved = json::parse(r.read("config").toStringRef());
    TORCH_CHECK_VALUE(saved == cfg_.to_json(), "checkpoint '", path,
                      "' was written for a different config; resume with the run's own "
                      "config.json");
    torch::serialize::InputArchive model, optim, alg;
    a.read("model", model);
    load_same_shapes(*net_, model);
    a.read("optimizer", optim);
    opt_->load(optim);
    a.read("algorithm", alg);
    alg_->load(alg);
    torch::serialize::InputArchive grads;
    if (a.try_read("grads", grads)) {
      for (auto& p : net_->named_parameters()) {
        torch::Tensor g;
        if (grads.try_read(p.key(), g)) p.value().mutable_grad() = g.to(p.value().device());
      }
    }
    epoch_ = r.read("epoch").toInt();
    step_in_epoch_ = r.read("step_in_epoch").toInt();
    loss_sum_ = r.read("loss_sum").toDouble();
    correct_ = r.read("correct").toInt();
    seen_ = r.read("seen").toInt();
    epoch_seconds_ = r.read("epoch_seconds").toDouble();
    lr_epoch_offset_ = r.read("lr_epoch_offset").toInt();
    seconds_ = r.read("seconds").toDouble();
    history_.clear();
    for (auto& row : json::parse(r.read("history").toStringRef())) history_.push_back(row);
  } catch (const c10::ValueError&) {
    throw;
  } catch (const std::exception& e) {
    r.fail("does not fit this run (" + one_line(e) + ")");
  }
  TORCH_CHECK_VALUE(epoch_ >= 0 && epoch_ <= cfg_.train.epochs && step_in_epoch_ >= 0 &&
                        static_cast<int64_t>(history_.size()) == epoch_,
                    "checkpoint '", path, "' is inconsistent (epoch ", epoch_, ")");
}

}  // namespace qsched::inner
