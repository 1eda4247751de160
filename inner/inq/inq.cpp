#include "inner/inq/inq.h"

#include <algorithm>
#include <cmath>

#include "datasets/dataset.h"
#include "inner/algorithms/scheduled_spec.h"
#include "inner/base/json_reader.h"
#include "inner/io.h"
#include "inner/observations.h"
#include "schedules/factory.h"

namespace qsched::inner::inq {

namespace {
at::Generator generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }
constexpr uint64_t kSaltPartition = 0x1a9;
}  // namespace

// ---------------------------------------------------------------------------------------------
// Codebook and projection

Codebook Codebook::from_max(double s, int bits) {
  TORCH_CHECK_VALUE(bits >= 2 && bits <= 8, "inq.bits = ", bits,
                    ". Violated constraint: 2 <= bits <= 8");
  TORCH_CHECK_VALUE(std::isfinite(s) && s > 0, "INQ codebook: max|W| = ", s,
                    ". Violated constraint: a finite max|W| > 0 (is the layer all zeros?)");
  Codebook cb;
  cb.bits = bits;
  cb.n1 = static_cast<int64_t>(std::floor(std::log2(4.0 * s / 3.0)));
  cb.n2 = cb.n1 + 1 - (int64_t{1} << (bits - 2));
  return cb;
}

Codebook Codebook::with_n1(int64_t n1, int bits) {
  TORCH_CHECK_VALUE(bits >= 2 && bits <= 8, "inq.bits = ", bits,
                    ". Violated constraint: 2 <= bits <= 8");
  Codebook cb;
  cb.bits = bits;
  cb.n1 = n1;
  cb.n2 = n1 + 1 - (int64_t{1} << (bits - 2));
  return cb;
}

std::vector<double> Codebook::magnitudes() const {
  std::vector<double> m{0.0};
  for (int64_t k = n2; k <= n1; ++k) m.push_back(std::ldexp(1.0, static_cast<int>(k)));
  return m;
}

torch::Tensor project(const torch::Tensor& w, const Codebook& cb) {
  // |w| = m·2^e with m in [0.5, 1). The interval of level 2^k is [0.75·2^k, 1.5·2^k), so
  // k = e if m >= 0.75 else e - 1: exact integer arithmetic, no log rounding at boundaries.
  auto a = w.abs();
  auto me = torch::frexp(a);
  auto k = std::get<1>(me).to(w.scalar_type()) - std::get<0>(me).lt(0.75).to(w.scalar_type());
  auto mag = torch::exp2(k.clamp_(static_cast<double>(cb.n2), static_cast<double>(cb.n1)));
  double zero_below = std::ldexp(1.0, static_cast<int>(cb.n2 - 1));
  return torch::where(a.lt(zero_below), torch::zeros_like(w), mag * w.sign());
}

double max_grid_distance(const torch::Tensor& w, const Codebook& cb) {
  if (w.numel() == 0) return 0.0;
  return (w - project(w, cb)).abs().max().item<double>();
}

/// True where |w| is exactly 0 or 2^k with n2 <= k <= n1.
static torch::Tensor on_codebook(const torch::Tensor& w, const Codebook& cb) {
  auto me = torch::frexp(w.abs());
  auto e = std::get<1>(me) - 1;  // |w| = 0.5·2^e = 2^(e-1) when m == 0.5
  auto pow2 = std::get<0>(me).eq(0.5).logical_and(e.ge(cb.n2)).logical_and(e.le(cb.n1));
  return w.eq(0).logical_or(pow2);
}

Partition partition_from_string(const std::string& s) {
  if (s == "magnitude") return Partition::kMagnitude;
  if (s == "random") return Partition::kRandom;
  TORCH_CHECK_VALUE(s == "random-repartition", "inq.partition = \"", s,
                    "\" is not one of: magnitude, random, random-repartition");
  return Partition::kRandomRepartition;
}

std::string to_string(Partition p) {
  switch (p) {
    case Partition::kMagnitude:
      return "magnitude";
    case Partition::kRandom:
      return "random";
    case Partition::kRandomRepartition:
      return "random-repartition";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Options

InqOptions InqOptions::from_json(const json& section) {
  InqOptions o;
  JsonReader r(section, "inq");
  o.bits = r.get<int>("bits", o.bits);
  r.check(o.bits >= 2 && o.bits <= 8, "bits", o.bits, "2 <= bits <= 8");
  std::string p = r.get<std::string>("partition", "magnitude");
  r.check_one_of("partition", p, {"magnitude", "random", "random-repartition"});
  o.partition = partition_from_string(p);
  std::string cbr = r.get<std::string>("codebook", "paper");
  r.check_one_of("codebook", cbr, {"paper", "min-error"});
  o.codebook = cbr == "paper" ? CodebookRule::kPaper : CodebookRule::kMinError;
  json sched = r.raw("schedule");
  o.schedule = sched.is_null() ? json{{"family", "inq_paper"},
                                      {"bits", std::clamp(o.bits, 2, 5)},
                                      {"epochs_per_step", 1}}
                               : sched;
  o.pretrain_epochs = r.get<int64_t>("pretrain_epochs", o.pretrain_epochs);
  r.check(o.pretrain_epochs >= 0, "pretrain_epochs", o.pretrain_epochs, "pretrain_epochs >= 0");
  o.init_checkpoint = r.get<std::string>("init_checkpoint", o.init_checkpoint);
  json ex = r.raw("exclude");
  if (!ex.is_null()) {
    TORCH_CHECK_VALUE(ex.is_array(),
                      "config: inq.exclude must be an array of \"first\", "
                      "\"last\" or layer indices");
    for (const auto& e : ex) {
      if (e.is_number_integer() && e.get<int64_t>() >= 0) {
        o.exclude.push_back(std::to_string(e.get<int64_t>()));
      } else {
        TORCH_CHECK_VALUE(e.is_string() && (e == "first" || e == "last"),
                          "config: inq.exclude "
                          "entry ",
                          e.dump(), " is not \"first\", \"last\" or a layer index >= 0");
        o.exclude.push_back(e.get<std::string>());
      }
    }
  }
  o.reset_lr = r.get<bool>("reset_lr", o.reset_lr);
  o.reset_optimizer = r.get<bool>("reset_optimizer", o.reset_optimizer);
  r.finish();
  return o;
}

json InqOptions::to_json() const {
  return {{"bits", bits},
          {"partition", qsched::inner::inq::to_string(partition)},
          {"codebook", codebook == CodebookRule::kPaper ? "paper" : "min-error"},
          {"schedule", schedule},
          {"pretrain_epochs", pretrain_epochs},
          {"init_checkpoint", init_checkpoint},
          {"exclude",
           [&] {
             json a = json::array();
             for (const auto& e : exclude)
               if (e == "first" || e == "last")
                 a.push_back(e);
               else
                 a.push_back(std::stoll(e));
             return a;
           }()},
          {"reset_lr", reset_lr},
          {"reset_optimizer", reset_optimizer}};
}

// ---------------------------------------------------------------------------------------------
// Algorithm

ScheduledOptions InqOptions::scheduled() const {
  return {"inq", sched::Quantity::kFraction, schedule, pretrain_epochs, init_checkpoint, exclude};
}

InqAlgorithm::InqAlgorithm(InqOptions opt, std::unique_ptr<sched::Schedule> schedule)
    : ScheduledAlgorithm(std::move(schedule)), opt_(std::move(opt)), scheduled_(opt_.scheduled()) {}

InqAlgorithm::InqAlgorithm(const RunConfig& cfg, std::unique_ptr<sched::Schedule> schedule)
    : InqAlgorithm(InqOptions::from_json(cfg.section()), std::move(schedule)) {}

void InqAlgorithm::setup_units(Trainer&, const std::vector<int64_t>& layers) {
  layers_.clear();
  for (int64_t i : layers) {
    Layer l;
    l.index = i;
    layers_.push_back(l);
  }
}

void InqAlgorithm::start(Trainer& t) {
  torch::NoGradGuard ng;
  for (auto& l : layers_) {
    auto& w = t.network()->layer(l.index)->weight;
    l.codebook = Codebook::from_max(w.abs().max().item<double>(), opt_.bits);
    if (opt_.codebook == CodebookRule::kMinError) {
      double best = (w - project(w, l.codebook)).pow(2).sum().item<double>();
      const int64_t n1 = l.codebook.n1;
      for (int64_t d = 1; d <= 4; ++d) {
        Codebook c = Codebook::with_n1(n1 - d, opt_.bits);
        double err = (w - project(w, c)).pow(2).sum().item<double>();
        if (err < best) best = err, l.codebook = c;
      }
    }
    l.trainable = torch::ones_like(w);
    l.frozen_values = torch::zeros_like(w);
    if (opt_.partition == Partition::kRandomRepartition) l.latent = w.detach().clone();
    l.frozen = 0;
    l.started = true;
  }
}

void InqAlgorithm::freeze_to(Trainer& t, Layer& l, double fraction, int64_t epoch) {
  torch::NoGradGuard ng;
  auto& w = t.network()->layer(l.index)->weight;
  const int64_t n = w.numel();
  const int64_t target = std::llround(fraction * static_cast<double>(n));
  auto flat_w = w.view({-1});
  auto flat_m = l.trainable.view({-1});
  auto flat_q = l.frozen_values.view({-1});
  if (opt_.partition == Partition::kRandomRepartition) {
    // Trainable weights' current values become their latent values; then a fresh random
    // subset of `target` weights shows its projection.
    l.latent.copy_(torch::where(l.trainable.to(torch::kBool), w, l.latent));
    auto gen = generator(data::derive_seed(t.config().seed, kSaltPartition + l.index, epoch));
    auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(w.device());
    auto idx = perm.slice(0, 0, target);
    flat_m.fill_(1);
    flat_q.zero_();
    flat_m.index_fill_(0, idx, 0);
    flat_q.index_copy_(0, idx, project(l.latent.view({-1}).index_select(0, idx), l.codebook));
    l.frozen = target;
    w.copy_(l.latent * l.trainable + l.frozen_values);
    return;
  }
  const int64_t add = target - l.frozen;
  if (add <= 0) return;
  torch::Tensor idx;
  if (opt_.partition == Partition::kMagnitude) {
    auto score = torch::where(flat_m.to(torch::kBool), flat_w.abs(), torch::full_like(flat_w, -1));
    idx = std::get<1>(score.topk(add));
  } else {
    auto candidates = flat_m.to(torch::kBool).nonzero().view({-1});
    auto gen = generator(data::derive_seed(t.config().seed, kSaltPartition + l.index, epoch));
    auto perm = torch::randperm(candidates.numel(), gen, torch::TensorOptions().dtype(torch::kLong))
                    .to(w.device());
    idx = candidates.index_select(0, perm.slice(0, 0, add));
  }
  flat_m.index_fill_(0, idx, 0);
  flat_q.index_copy_(0, idx, project(flat_w.index_select(0, idx), l.codebook));
  l.frozen = target;
  w.mul_(l.trainable).add_(l.frozen_values);
}

json InqAlgorithm::observe_unit(Trainer& t, size_t j) {
  const Layer& l = layers_[j];
  auto& layer = t.network()->layer(l.index);
  std::vector<double> levels;
  for (double m : l.codebook.magnitudes())
    if (m > 0) levels.push_back(-m);
  std::reverse(levels.begin(), levels.end());
  for (double m : l.codebook.magnitudes()) levels.push_back(m);
  return observe_layer(t.network()->quant_layers()[l.index], layer->weight,
                       project(layer->weight, l.codebook), levels, layer->weight.grad());
}

void InqAlgorithm::apply_values(Trainer& t, int64_t epoch, const std::vector<double>& f) {
  bool increased = last_fraction_.empty();
  for (size_t j = 0; j < layers_.size(); ++j) {
    if (!last_fraction_.empty() && f[j] > last_fraction_[j]) increased = true;
    freeze_to(t, layers_[j], f[j], epoch);
  }
  last_fraction_ = f;
  if (increased && epoch > driver().start()) {
    if (opt_.reset_optimizer) t.reset_optimizer();
    if (opt_.reset_lr) t.set_lr_epoch_offset(epoch);
  }
}

void InqAlgorithm::after_step(Trainer& t) {
  torch::NoGradGuard ng;
  for (auto& l : layers_) {
    if (!l.started || l.frozen == 0) continue;
    t.network()->layer(l.index)->weight.mul_(l.trainable).add_(l.frozen_values);
  }
}

json InqAlgorithm::epoch_extra(Trainer& t) {
  json fr = json::array();
  for (const auto& l : layers_) {
    auto n = t.network()->layer(l.index)->weight.numel();
    fr.push_back(static_cast<double>(l.frozen) / static_cast<double>(n));
  }
  return {{"frozen_fraction", fr}};
}

void InqAlgorithm::finish(Trainer& t, json& s) {
  torch::NoGradGuard ng;
  bool on_grid = true;
  double max_dist = 0.0;
  json layers = json::array();
  for (const auto& l : layers_) {
    auto& w = t.network()->layer(l.index)->weight;
    bool ok = l.started && on_codebook(w, l.codebook).all().item<bool>();
    double d = l.started ? max_grid_distance(w, l.codebook) : INFINITY;
    on_grid = on_grid && ok;
    max_dist = std::max(max_dist, d);
    layers.push_back({{"index", l.index},
                      {"n1", l.codebook.n1},
                      {"n2", l.codebook.n2},
                      {"levels", l.codebook.num_levels()},
                      {"frozen_fraction", static_cast<double>(l.frozen) / w.numel()},
                      {"on_grid", ok}});
  }
  s["bits"] = opt_.bits;
  s["partition"] = to_string(opt_.partition);
  s["quantized"] = on_grid;
  s["on_grid"] = on_grid;
  s["max_grid_distance"] = max_dist;
  s["quantized_layers"] = layers;
  json excluded = json::array();
  for (const auto& e : opt_.exclude) excluded.push_back(e);
  s["float_layers"] = excluded;
}

void InqAlgorithm::save_state(torch::serialize::OutputArchive& a) const {
  a.write("last_fraction", c10::IValue(json(last_fraction_).dump()));
  for (size_t j = 0; j < layers_.size(); ++j) {
    const auto& l = layers_[j];
    std::string p = "layer" + std::to_string(j) + ".";
    a.write(p + "started", c10::IValue(l.started));
    if (!l.started) continue;
    a.write(p + "n1", c10::IValue(l.codebook.n1));
    a.write(p + "n2", c10::IValue(l.codebook.n2));
    a.write(p + "frozen", c10::IValue(l.frozen));
    a.write(p + "trainable", l.trainable, /*is_buffer=*/true);
    a.write(p + "frozen_values", l.frozen_values, true);
    if (l.latent.defined()) a.write(p + "latent", l.latent, true);
  }
}

void InqAlgorithm::load_state(torch::serialize::InputArchive& a) {
  c10::IValue v;
  a.read("last_fraction", v);
  last_fraction_ = json::parse(v.toStringRef()).get<std::vector<double>>();
  for (size_t j = 0; j < layers_.size(); ++j) {
    auto& l = layers_[j];
    std::string p = "layer" + std::to_string(j) + ".";
    a.read(p + "started", v);
    l.started = v.toBool();
    if (!l.started) continue;
    l.codebook.bits = opt_.bits;
    a.read(p + "n1", v);
    l.codebook.n1 = v.toInt();
    a.read(p + "n2", v);
    l.codebook.n2 = v.toInt();
    a.read(p + "frozen", v);
    l.frozen = v.toInt();
    a.read(p + "trainable", l.trainable, true);
    a.read(p + "frozen_values", l.frozen_values, true);
    if (opt_.partition == Partition::kRandomRepartition) a.read(p + "latent", l.latent, true);
  }
}

AlgorithmSpec spec() {
  return scheduled_spec<InqAlgorithm, InqOptions>(
      "inq",
      "incremental network quantization: a growing fraction of each layer frozen on powers of "
      "two (Zhou et al. 2017)",
      sched::Quantity::kFraction, [](const InqOptions& o) { return o.to_json(); },
      [](const InqOptions& o) { return std::to_string(o.bits) + "-bit pow2 weights"; });
}

}  // namespace qsched::inner::inq
