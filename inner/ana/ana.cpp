// ANA options and the trainer Algorithm (see ana.h).
#include "inner/ana/ana.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "datasets/dataset.h"
#include "inner/algorithms/scheduled_spec.h"
#include "inner/io.h"
#include "inner/observations.h"
#include "schedules/factory.h"

namespace qsched::inner::ana {

namespace {
constexpr uint64_t kSaltNoise = 0xa7a;

bool is_small(const Levels& lv) { return lv.name == "binary" || lv.name == "ternary"; }

/// Reads "scale" and "scale_multiplier" of a weights/activations object.
ScaleOptions parse_scale(JsonReader& r, bool weights) {
  ScaleOptions s;
  json v = r.raw("scale");
  if (v.is_number()) {
    s.rule = "fixed";
    s.value = v.get<double>();
    r.check(std::isfinite(s.value) && s.value > 0, "scale", s.value, "a fixed scale is > 0");
  } else if (!v.is_null()) {
    TORCH_CHECK_VALUE(v.is_string(), "config: ", r.full("scale"), " has type ", json_type_name(v),
                      ", expected \"auto\", \"mean_abs\", \"max_abs\" or a number");
    s.rule = v.get<std::string>();
    r.check_one_of("scale", s.rule, {"auto", "mean_abs", "max_abs"});
  }
  s.multiplier = r.get<double>("scale_multiplier", 0.0);
  if (r.has("scale_multiplier")) {
    r.check(std::isfinite(s.multiplier) && s.multiplier > 0, "scale_multiplier", s.multiplier,
            "scale_multiplier > 0");
    r.check(s.rule != "fixed", "scale_multiplier", s.multiplier,
            "only with a statistic scale (auto, mean_abs, max_abs)");
  }
  if (weights) {
    std::string update =
        r.get<std::string>("scale_update", s.rule == "fixed" ? "fixed" : "dynamic");
    r.check_one_of("scale_update", update, {"fixed", "dynamic"});
    s.dynamic = update == "dynamic";
    r.check(!s.dynamic || s.rule != "fixed", "scale_update", "\"dynamic\"",
            "a dynamic scale needs a statistic scale (auto, mean_abs, max_abs)");
  }
  return s;
}

/// "scale" (and "scale_multiplier") of a weights/activations object, resolved for `lv`.
void scale_config(const ScaleOptions& s, const Levels& lv, json& out) {
  ScaleOptions r = s.resolved(lv);
  if (r.rule == "fixed") {
    out["scale"] = r.value;
  } else {
    out["scale"] = r.rule;
    out["scale_multiplier"] = r.multiplier;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scale

ScaleOptions ScaleOptions::resolved(const Levels& lv) const {
  ScaleOptions s = *this;
  if (s.rule == "auto") s.rule = is_small(lv) ? "mean_abs" : "max_abs";
  if (s.multiplier <= 0 && s.rule == "mean_abs") s.multiplier = lv.name == "ternary" ? 1.4 : 1.0;
  if (s.multiplier <= 0) s.multiplier = 1.0;
  return s;
}

double ScaleOptions::compute(const torch::Tensor& x, const Levels& lv) const {
  ScaleOptions s = resolved(lv);
  if (s.rule == "fixed") return s.value;
  torch::NoGradGuard ng;
  auto a = x.detach().abs();
  if (s.rule == "mean_abs") return s.multiplier * a.mean().item<double>();
  return s.multiplier * a.max().item<double>() / lv.max_abs();
}

torch::Tensor ScaleOptions::compute_tensor(const torch::Tensor& x, const Levels& lv) const {
  ScaleOptions s = resolved(lv);
  TORCH_INTERNAL_ASSERT(s.rule != "fixed");
  auto a = x.detach().abs();
  if (s.rule == "mean_abs") return a.mean().mul_(s.multiplier);
  return a.max().mul_(s.multiplier / lv.max_abs());
}

json ScaleOptions::to_json() const {
  if (rule == "fixed") return {{"rule", "fixed"}, {"value", value}};
  return {{"rule", rule}, {"multiplier", multiplier}, {"update", dynamic ? "dynamic" : "fixed"}};
}

// ---------------------------------------------------------------------------------------------
// Options

AnaOptions AnaOptions::from_json(const json& section) {
  AnaOptions o;
  JsonReader r(section, "ana");
  {
    JsonReader w = r.child("weights");
    json lv = w.raw("levels");
    if (!lv.is_null()) o.weight_levels = Levels::from_json(lv, w.full("levels"));
    o.weight_scale = parse_scale(w, true);
    w.finish();
  }
  {
    JsonReader a = r.child("activations");
    o.activations = a.get<bool>("enabled", o.activations);
    json lv = a.raw("levels");
    if (!lv.is_null()) o.activation_levels = Levels::from_json(lv, a.full("levels"));
    o.activation_scale = parse_scale(a, false);
    o.activation_sigma_ratio = a.get<double>("sigma_ratio", o.activation_sigma_ratio);
    a.check(std::isfinite(o.activation_sigma_ratio) && o.activation_sigma_ratio >= 0, "sigma_ratio",
            o.activation_sigma_ratio, "sigma_ratio >= 0");
    a.finish();
  }
  std::string noise = r.get<std::string>("noise", "uniform");
  r.check_one_of("noise", noise, noise_families());
  o.noise = noise_family_from_string(noise);
  std::string param = r.get<std::string>("parametrization", "native");
  r.check_one_of("parametrization", param, {"native", "std"});
  o.std_parametrization = param == "std";
  std::string strategy = r.get<std::string>("strategy", "expectation");
  r.check_one_of("strategy", strategy, strategies());
  o.strategy = strategy_from_string(strategy);
  {
    JsonReader b = r.child("backward");
    std::string bn = b.get<std::string>("noise", noise);
    b.check_one_of("noise", bn, noise_families());
    o.backward_noise = noise_family_from_string(bn);
    o.backward_ratio = b.get<double>("ratio", o.backward_ratio);
    b.check(std::isfinite(o.backward_ratio) && o.backward_ratio >= 0, "ratio", o.backward_ratio,
            "ratio >= 0");
    o.backward_floor = b.get<double>("floor", o.backward_floor);
    b.check(std::isfinite(o.backward_floor) && o.backward_floor >= 0, "floor", o.backward_floor,
            "floor >= 0 (0 lets gradients vanish when sigma reaches 0)");
    b.finish();
  }
  json sched = r.raw("schedule");
  if (!sched.is_null()) {
    TORCH_CHECK_VALUE(sched.is_object(),
                      "config: ana.schedule must be an object with a "
                      "\"family\", got ",
                      json_type_name(sched));
    o.schedule = sched;
  }
  o.pretrain_epochs = r.get<int64_t>("pretrain_epochs", o.pretrain_epochs);
  r.check(o.pretrain_epochs >= 0, "pretrain_epochs", o.pretrain_epochs, "pretrain_epochs >= 0");
  o.init_checkpoint = r.get<std::string>("init_checkpoint", o.init_checkpoint);
  o.calibration_samples = r.get<int64_t>("calibration_samples", o.calibration_samples);
  r.check(o.calibration_samples >= 1, "calibration_samples", o.calibration_samples,
          "calibration_samples >= 1");
  json ex = r.raw("exclude");
  if (!ex.is_null()) {
    TORCH_CHECK_VALUE(ex.is_array(),
                      "config: ana.exclude must be an array of \"first\", \"last\", "
                      "layer indices or layer names");
    for (const auto& e : ex) {
      if (e.is_number_integer() && e.get<int64_t>() >= 0) {
        o.exclude.push_back(std::to_string(e.get<int64_t>()));
      } else {
        TORCH_CHECK_VALUE(e.is_string() && !e.get<std::string>().empty(),
                          "config: ana.exclude entry ", e.dump(),
                          " is not \"first\", \"last\", a layer index >= 0 or a layer name");
        o.exclude.push_back(e.get<std::string>());
      }
    }
  }
  r.finish();
  return o;
}

json AnaOptions::to_config() const {
  json w = {{"levels", weight_levels.config()},
            {"scale_update", weight_scale.dynamic ? "dynamic" : "fixed"}};
  scale_config(weight_scale, weight_levels, w);
  json a = {{"enabled", activations},
            {"levels", activation_levels.config()},
            {"sigma_ratio", activation_sigma_ratio}};
  scale_config(activation_scale, activation_levels, a);
  return {{"weights", w},
          {"activations", a},
          {"noise", to_string(noise)},
          {"parametrization", std_parametrization ? "std" : "native"},
          {"strategy", to_string(strategy)},
          {"backward",
           {{"noise", to_string(backward_noise)},
            {"ratio", backward_ratio},
            {"floor", backward_floor}}},
          {"schedule", schedule},
          {"pretrain_epochs", pretrain_epochs},
          {"init_checkpoint", init_checkpoint},
          {"calibration_samples", calibration_samples},
          {"exclude", exclude}};
}

json AnaOptions::to_json() const {
  json j = to_config();  // the same settings; levels and scales in their expanded form
  j["weights"] = {{"levels", weight_levels.to_json()},
                  {"scale", weight_scale.resolved(weight_levels).to_json()}};
  j["activations"] = {{"enabled", activations},
                      {"levels", activation_levels.to_json()},
                      {"scale", activation_scale.resolved(activation_levels).to_json()},
                      {"sigma_ratio", activation_sigma_ratio}};
  return j;
}

// ---------------------------------------------------------------------------------------------
// One quantizer

torch::Tensor QuantizerState::apply(const torch::Tensor& x, bool training) const {
  if (capture) *capture = x.detach();
  if (!active) return is_activation ? torch::relu(x) : x;
  QuantOp op;
  op.forward_noise = forward_noise;
  op.backward_noise = backward_noise;
  op.strategy = strategy;
  op.gen = gen;
  if (dynamic) {  // eps as a tensor (no host sync): divide, quantize, multiply back
    torch::Tensor e = scale.compute_tensor(x, levels);
    if (hard || !training) return hard_quantize(x / e, levels).mul_(e);
    op.levels = &levels;
    op.forward_scale = forward_scale;
    op.backward_scale = backward_scale;
    return ana_quantize(x / e, op) * e;
  }
  // Fixed eps: quantize x directly on the scaled grid (levels, thresholds and noise times
  // eps), which costs no extra pass over x.
  const Levels lv = levels.scaled(eps);
  if (hard || !training) return hard_quantize(x, lv);
  op.levels = &lv;
  op.forward_scale = forward_scale * eps;
  op.backward_scale = backward_scale * eps;
  return ana_quantize(x, op);
}

double QuantizerState::grid_distance(const torch::Tensor& x) const {
  torch::NoGradGuard ng;
  if (x.numel() == 0) return 0.0;
  if (dynamic) {
    torch::Tensor e = scale.compute_tensor(x, levels);
    return (x - hard_quantize(x / e, levels).mul_(e)).abs().max().item<double>();
  }
  return (x - hard_quantize(x, levels.scaled(eps))).abs().max().item<double>();
}

// ---------------------------------------------------------------------------------------------
// Algorithm

ScheduledOptions AnaOptions::scheduled() const {
  return {"ana", sched::Quantity::kNoise, schedule, pretrain_epochs, init_checkpoint, exclude};
}

AnaAlgorithm::AnaAlgorithm(AnaOptions opt, std::unique_ptr<sched::Schedule> schedule)
    : ScheduledAlgorithm(std::move(schedule)), opt_(std::move(opt)), scheduled_(opt_.scheduled()) {}

AnaAlgorithm::AnaAlgorithm(const RunConfig& cfg, std::unique_ptr<sched::Schedule> schedule)
    : AnaAlgorithm(AnaOptions::from_json(cfg.section()), std::move(schedule)) {}

std::vector<std::shared_ptr<QuantizerState>> AnaAlgorithm::all_states() const {
  std::vector<std::shared_ptr<QuantizerState>> v;
  for (const auto& u : units_) {
    v.push_back(u.weight);
    for (const auto& a : u.act) v.push_back(a);
  }
  return v;
}

void AnaAlgorithm::set_hard(bool hard) {
  for (auto& s : all_states()) s->hard = hard;
}

void AnaAlgorithm::setup_units(Trainer& t, const std::vector<int64_t>& layers) {
  auto& net = *t.network();
  const int64_t L = net.num_quant_layers();
  const auto& infos = net.quant_layers();

  // Which layer each activation follows: one dry forward pass in eval mode (no BN update)
  // with recording transforms.
  std::vector<int64_t> owner(net.activations().size(), -1);
  {
    torch::NoGradGuard ng;
    int64_t last = -1;
    for (int64_t i = 0; i < L; ++i)
      net.layer(i)->set_weight_transform([&last, i](const torch::Tensor& w) {
        last = i;
        return w;
      });
    for (size_t a = 0; a < owner.size(); ++a)
      net.activation(a)->set_transform([&owner, &last, a](const torch::Tensor& x) {
        owner[a] = last;
        return torch::relu(x);
      });
    bool was_training = net.is_training();
    net.eval();
    const auto& images = t.data().train.images;
    net.forward(images.slice(0, 0, 1));
    net.train(was_training);
    for (int64_t i = 0; i < L; ++i) net.layer(i)->clear_weight_transform();
    for (size_t a = 0; a < owner.size(); ++a) net.activation(a)->clear_transform();
  }

  gen_ = at::detail::createCPUGenerator(data::derive_seed(t.config().seed, kSaltNoise));
  units_.clear();
  for (int64_t i : layers) {
    Unit u;
    u.layer = i;
    u.name = infos[i].name;
    auto make = [&](const Levels& lv, bool is_act) {
      auto s = std::make_shared<QuantizerState>();
      s->levels = lv;
      s->is_activation = is_act;
      s->forward_noise = opt_.noise;
      s->backward_noise = opt_.backward_noise;
      s->strategy = opt_.strategy;
      s->gen = gen_;
      return s;
    };
    u.weight = make(opt_.weight_levels, false);
    QuantLayerImpl* layer = net.layer(i).get();
    auto ws = u.weight;
    net.layer(i)->set_weight_transform(
        [ws, layer](const torch::Tensor& w) { return ws->apply(w, layer->is_training()); });
    if (opt_.activations) {
      for (size_t a = 0; a < owner.size(); ++a) {
        if (owner[a] != i) continue;
        auto as = make(opt_.activation_levels, true);
        ActivationImpl* act = net.activation(a).get();
        net.activation(a)->set_transform(
            [as, act](const torch::Tensor& x) { return as->apply(x, act->is_training()); });
        u.activations.push_back(static_cast<int64_t>(a));
        u.act.push_back(as);
      }
    }
    units_.push_back(std::move(u));
  }
}

void AnaAlgorithm::start(Trainer& t) {
  torch::NoGradGuard ng;
  auto& net = *t.network();
  for (auto& u : units_) {
    const auto& w = net.layer(u.layer)->weight;
    double eps = opt_.weight_scale.compute(w, opt_.weight_levels);
    TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "ana: layer ", u.name, " has weight scale ",
                      eps, " (all-zero weights?). Violated constraint: a finite scale > 0");
    u.weight->eps = eps;
    u.weight->scale = opt_.weight_scale.resolved(opt_.weight_levels);
    u.weight->dynamic = opt_.weight_scale.dynamic;
    u.weight->active = true;
  }
  // Activation scales from a calibration batch, in forward order, every earlier quantizer
  // hard. Train mode (BatchNorm normalizes with batch statistics, as in training), with the
  // buffers (BN running statistics) restored afterwards.
  const auto& images = t.data().train.images;
  auto batch = images.slice(0, 0, std::min<int64_t>(opt_.calibration_samples, images.size(0)));
  std::vector<torch::Tensor> saved;
  for (auto& b : net.buffers()) saved.push_back(b.clone());
  set_hard(true);
  for (auto& u : units_) {
    for (auto& a : u.act) {
      torch::Tensor input;
      a->capture = &input;
      net.forward(batch);
      a->capture = nullptr;
      TORCH_INTERNAL_ASSERT(input.defined(), "ana: activation of ", u.name, " was not reached");
      double eps = opt_.activation_scale.compute(input, opt_.activation_levels);
      TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "ana: the activation after ", u.name,
                        " has scale ", eps,
                        " on the calibration batch. Violated constraint: a finite scale > 0");
      a->eps = eps;
      a->active = true;
    }
  }
  set_hard(false);
  auto buffers = net.buffers();
  for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
  started_ = true;
}

void AnaAlgorithm::set_sigma(const std::vector<double>& sigma) {
  TORCH_INTERNAL_ASSERT(sigma.size() == units_.size());
  sigma_ = sigma;
  auto configure = [&](QuantizerState& s, double sig) {
    s.forward_scale = opt_.native(opt_.noise, sig);
    s.backward_scale =
        opt_.native(opt_.backward_noise, std::max(opt_.backward_ratio * sig, opt_.backward_floor));
  };
  for (size_t j = 0; j < units_.size(); ++j) {
    units_[j].sigma = sigma[j];
    configure(*units_[j].weight, sigma[j]);
    for (auto& a : units_[j].act) configure(*a, opt_.activation_sigma_ratio * sigma[j]);
  }
}

json AnaAlgorithm::observe_unit(Trainer& t, size_t j) {
  const Unit& u = units_[j];
  auto& w = t.network()->layer(u.layer)->weight;
  double eps = u.weight->dynamic ? u.weight->scale.compute(w, u.weight->levels) : u.weight->eps;
  Levels lv = u.weight->levels.scaled(eps);
  return observe_layer(t.network()->quant_layers()[u.layer], w, hard_quantize(w, lv), lv.values,
                       w.grad());
}

double AnaAlgorithm::max_grid_distance(Trainer& t) {
  torch::NoGradGuard ng;
  double d = 0;
  for (auto& u : units_) {
    if (!started_) return INFINITY;
    d = std::max(d, u.weight->grid_distance(t.network()->layer(u.layer)->weight));
  }
  return d;
}

void AnaAlgorithm::finish(Trainer& t, json& s) {
  torch::NoGradGuard ng;
  auto& net = *t.network();
  // Harden: the stored weights become their hard quantized values, so the float weights, the
  // effective weights and the evaluated network are one and the same.
  json layers = json::array();
  bool on_grid = started_;
  double max_dist = started_ ? 0.0 : INFINITY;
  set_hard(true);
  for (auto& u : units_) {
    auto& layer = net.layer(u.layer);
    if (started_ && !finished_) {
      if (u.weight->dynamic) {  // freeze the dynamic scale at its final (float32) value
        u.weight->eps =
            u.weight->scale.compute_tensor(layer->weight, u.weight->levels).item<double>();
        u.weight->dynamic = false;
      }
      layer->weight.copy_(layer->effective_weight());
    }
    auto w = layer->effective_weight();
    const auto& lv = u.weight->levels;
    const double eps = u.weight->eps;
    auto q = hard_quantize(w, lv.scaled(eps));
    double d = started_ ? u.weight->grid_distance(w) : INFINITY;
    bool ok = started_ && d == 0.0 && layer->weight.equal(w);
    on_grid = on_grid && ok;
    max_dist = std::max(max_dist, d);
    json fractions = json::array();
    for (double v : lv.values)
      fractions.push_back(q.eq(v * eps).to(torch::kDouble).mean().item<double>());
    json acts = json::array();
    for (size_t k = 0; k < u.act.size(); ++k)
      acts.push_back({{"index", u.activations[k]}, {"scale", u.act[k]->eps}});
    layers.push_back({{"index", u.layer},
                      {"name", u.name},
                      {"scale", eps},
                      {"level_fractions", fractions},
                      {"on_grid", ok},
                      {"activations", acts}});
  }
  set_hard(false);
  finished_ = started_;
  bool annealed = true;
  for (double v : driver().last()) annealed = annealed && v == 0.0;
  annealed = annealed && driver().table().epochs() == driver().epochs();
  json q = opt_.to_json();
  q.erase("schedule");
  q.erase("init_checkpoint");
  q.erase("calibration_samples");
  s["quantizer"] = q;
  s["schedule"] = driver().schedule().describe();
  s["quantized"] = on_grid && annealed;
  s["on_grid"] = on_grid;
  s["annealed"] = annealed;
  s["max_grid_distance"] = max_dist;
  s["activations_quantized"] = opt_.activations;
  s["quantized_layers"] = layers;
  s["float_layers"] = float_layers();
}

json AnaAlgorithm::epoch_extra(Trainer& t) {
  if (!started_ || sigma_.empty()) return json::object();
  return {{"ana_sigma", sigma_}};
}

void AnaAlgorithm::save_state(torch::serialize::OutputArchive& a) const {
  a.write("started", c10::IValue(started_));
  a.write("finished", c10::IValue(finished_));
  a.write("sigma", c10::IValue(json(sigma_).dump()));
  json eps = json::array();
  for (const auto& s : all_states()) eps.push_back(s->eps);
  a.write("scales", c10::IValue(eps.dump()));
  a.write("generator", gen_.get_state(), /*is_buffer=*/true);
}

void AnaAlgorithm::load_state(torch::serialize::InputArchive& a) {
  c10::IValue v;
  a.read("started", v);
  started_ = v.toBool();
  a.read("finished", v);
  finished_ = v.toBool();
  a.read("sigma", v);
  auto sigma = json::parse(v.toStringRef()).get<std::vector<double>>();
  a.read("scales", v);
  auto eps = json::parse(v.toStringRef()).get<std::vector<double>>();
  auto states = all_states();
  TORCH_CHECK_VALUE(eps.size() == states.size(), "checkpoint holds ", eps.size(),
                    " ANA scales, this network has ", states.size(), " quantizers");
  for (size_t i = 0; i < states.size(); ++i) {
    states[i]->eps = eps[i];
    states[i]->active = started_;
  }
  for (auto& u : units_) {
    u.weight->scale = opt_.weight_scale.resolved(opt_.weight_levels);
    u.weight->dynamic = started_ && !finished_ && opt_.weight_scale.dynamic;
  }
  torch::Tensor g;
  a.read("generator", g, true);
  gen_.set_state(g);
  if (!sigma.empty()) set_sigma(sigma);
}

AlgorithmSpec spec() {
  AlgorithmSpec s = scheduled_spec<AnaAlgorithm, AnaOptions>(
      "ana",
      "additive noise annealing: per-layer noise on weights and activations annealed to the "
      "hard quantizer (Spallanzani et al. 2019, 2022)",
      sched::Quantity::kNoise, [](const AnaOptions& o) { return o.to_config(); },
      [](const AnaOptions& o) {
        return o.weight_levels.name + " weights" +
               (o.activations ? ", " + o.activation_levels.name + " activations" : "");
      });
  s.differentiable = true;
  return s;
}

}  // namespace qsched::inner::ana
