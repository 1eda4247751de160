#include "inner/config.h"

#include <cmath>

#include "inner/algorithms/registry.h"
#include "inner/runtime.h"

namespace qsched::inner {

json RunConfig::to_json() const {
  json j;
  j["seed"] = seed;
  j["device"] = device;
  j["threads"] = threads;
  j["algorithm"] = algorithm;
  const auto& s = data.synthetic;
  j["data"] = {{"format", data.format},
               {"root", data.root},
               {"val_size", data.val_size},
               {"subset", data.subset},
               {"normalize", data.normalize},
               {"synthetic",
                {{"n", s.n},
                 {"test_n", data.synthetic_test_n},
                 {"channels", s.channels},
                 {"height", s.height},
                 {"width", s.width},
                 {"num_classes", s.num_classes},
                 {"noise", s.noise}}}};
  j["network"] = network;
  const auto& o = train.optimizer;
  const auto& l = train.lr_schedule;
  j["train"] = {{"epochs", train.epochs},
                {"batch_size", train.batch_size},
                {"eval_batch_size", train.eval_batch_size},
                {"optimizer",
                 {{"name", o.name},
                  {"lr", o.lr},
                  {"momentum", o.momentum},
                  {"nesterov", o.nesterov},
                  {"weight_decay", o.weight_decay},
                  {"beta1", o.beta1},
                  {"beta2", o.beta2},
                  {"eps", o.eps}}},
                {"lr_schedule",
                 {{"name", l.name},
                  {"step_size", l.step_size},
                  {"gamma", l.gamma},
                  {"min_lr", l.min_lr},
                  {"warmup_epochs", l.warmup_epochs}}}};
  for (auto it = algorithm_sections.begin(); it != algorithm_sections.end(); ++it)
    j[it.key()] = it.value();
  return j;
}

namespace {

void parse_data(JsonReader r, DataConfig& d) {
  d.format = r.get<std::string>("format", d.format);
  r.check_one_of("format", d.format, {"idx", "cifar10", "synthetic"});
  if (d.format == "cifar10" && !r.has("root")) d.root = "";
  d.root = r.get<std::string>("root", d.root);
  r.check(d.format == "synthetic" || !d.root.empty(), "root", "\"\"",
          "root names the data directory");
  d.val_size = r.get<int64_t>("val_size", d.format == "synthetic" ? 256 : d.val_size);
  r.check(d.val_size >= 1, "val_size", d.val_size, "val_size >= 1");
  d.subset = r.get<int64_t>("subset", d.subset);
  r.check(d.subset >= 0, "subset", d.subset, "subset >= 0 (0 = all)");
  d.normalize = r.get<bool>("normalize", d.normalize);
  JsonReader s = r.child("synthetic");
  auto& so = d.synthetic;
  so.n = s.get<int64_t>("n", 2048);
  s.check(so.n >= 2, "n", so.n, "n >= 2");
  d.synthetic_test_n = s.get<int64_t>("test_n", d.synthetic_test_n);
  s.check(d.synthetic_test_n >= 1, "test_n", d.synthetic_test_n, "test_n >= 1");
  so.channels = s.get<int64_t>("channels", so.channels);
  s.check(so.channels >= 1, "channels", so.channels, "channels >= 1");
  so.height = s.get<int64_t>("height", so.height);
  s.check(so.height >= 1, "height", so.height, "height >= 1");
  so.width = s.get<int64_t>("width", so.width);
  s.check(so.width >= 1, "width", so.width, "width >= 1");
  so.num_classes = s.get<int64_t>("num_classes", so.num_classes);
  s.check(so.num_classes >= 2, "num_classes", so.num_classes, "num_classes >= 2");
  so.noise = s.get<double>("noise", so.noise);
  s.check(so.noise >= 0, "noise", so.noise, "noise >= 0");
  // Bounded before the generator allocates n + test_n images of C*H*W floats.
  s.check(so.n <= kMaxSyntheticImages, "n", so.n, "n <= " + std::to_string(kMaxSyntheticImages));
  s.check(d.synthetic_test_n <= kMaxSyntheticImages, "test_n", d.synthetic_test_n,
          "test_n <= " + std::to_string(kMaxSyntheticImages));
  s.check(so.channels <= 4096 && so.height <= 4096 && so.width <= 4096, "channels/height/width",
          std::to_string(so.channels) + "x" + std::to_string(so.height) + "x" +
              std::to_string(so.width),
          "each <= 4096");
  s.check(so.num_classes <= 65536, "num_classes", so.num_classes, "num_classes <= 65536");
  const double floats = static_cast<double>(so.n + d.synthetic_test_n) * so.channels *
                        static_cast<double>(so.height) * so.width;
  s.check(floats <= static_cast<double>(kMaxSyntheticFloats), "n", so.n,
          "(n + test_n) * channels * height * width <= " + std::to_string(kMaxSyntheticFloats));
  s.finish();
  r.finish();
}

void parse_train(JsonReader r, TrainConfig& t) {
  t.epochs = r.get<int64_t>("epochs", t.epochs);
  r.check(t.epochs >= 1 && t.epochs <= kMaxEpochs, "epochs", t.epochs,
          "1 <= epochs <= " + std::to_string(kMaxEpochs));
  t.batch_size = r.get<int64_t>("batch_size", t.batch_size);
  r.check(t.batch_size >= 1 && t.batch_size <= kMaxBatchSize, "batch_size", t.batch_size,
          "1 <= batch_size <= " + std::to_string(kMaxBatchSize));
  t.eval_batch_size = r.get<int64_t>("eval_batch_size", t.eval_batch_size);
  r.check(t.eval_batch_size >= 1 && t.eval_batch_size <= kMaxBatchSize, "eval_batch_size",
          t.eval_batch_size, "1 <= eval_batch_size <= " + std::to_string(kMaxBatchSize));

  JsonReader o = r.child("optimizer");
  auto& op = t.optimizer;
  op.name = o.get<std::string>("name", op.name);
  o.check_one_of("name", op.name, {"sgd", "adam"});
  op.lr = o.get<double>("lr", op.name == "adam" ? 1e-3 : op.lr);
  o.check(op.lr > 0 && std::isfinite(op.lr), "lr", op.lr, "lr > 0");
  op.momentum = o.get<double>("momentum", op.momentum);
  o.check(op.momentum >= 0 && op.momentum < 1, "momentum", op.momentum, "0 <= momentum < 1");
  op.nesterov = o.get<bool>("nesterov", op.nesterov);
  o.check(!op.nesterov || op.momentum > 0, "nesterov", "true", "nesterov needs momentum > 0");
  op.weight_decay = o.get<double>("weight_decay", op.weight_decay);
  o.check(op.weight_decay >= 0, "weight_decay", op.weight_decay, "weight_decay >= 0");
  op.beta1 = o.get<double>("beta1", op.beta1);
  o.check(op.beta1 >= 0 && op.beta1 < 1, "beta1", op.beta1, "0 <= beta1 < 1");
  op.beta2 = o.get<double>("beta2", op.beta2);
  o.check(op.beta2 >= 0 && op.beta2 < 1, "beta2", op.beta2, "0 <= beta2 < 1");
  op.eps = o.get<double>("eps", op.eps);
  o.check(op.eps > 0, "eps", op.eps, "eps > 0");
  o.finish();

  JsonReader l = r.child("lr_schedule");
  auto& ls = t.lr_schedule;
  ls.name = l.get<std::string>("name", ls.name);
  l.check_one_of("name", ls.name, {"constant", "step", "cosine"});
  ls.step_size = l.get<int64_t>("step_size", ls.step_size);
  l.check(ls.step_size >= 1, "step_size", ls.step_size, "step_size >= 1");
  ls.gamma = l.get<double>("gamma", ls.gamma);
  l.check(ls.gamma > 0 && ls.gamma <= 1, "gamma", ls.gamma, "0 < gamma <= 1");
  ls.min_lr = l.get<double>("min_lr", ls.min_lr);
  l.check(ls.min_lr >= 0 && ls.min_lr <= op.lr, "min_lr", ls.min_lr, "0 <= min_lr <= lr");
  ls.warmup_epochs = l.get<int64_t>("warmup_epochs", ls.warmup_epochs);
  l.check(ls.warmup_epochs >= 0 && ls.warmup_epochs < t.epochs, "warmup_epochs", ls.warmup_epochs,
          "0 <= warmup_epochs < epochs");
  l.finish();
  r.finish();
}

}  // namespace

RunConfig parse_run_config(const json& j) {
  RunConfig c;
  JsonReader r(j, "");
  int64_t seed = r.get<int64_t>("seed", 0);
  r.check(seed >= 0, "seed", seed, "seed >= 0");
  c.seed = static_cast<uint64_t>(seed);
  c.device = r.get<std::string>("device", c.device);
  parse_device(c.device);
  c.threads = r.get<int>("threads", c.threads);
  r.check(c.threads >= 1 && c.threads <= 256, "threads", c.threads, "1 <= threads <= 256");
  c.algorithm = r.get<std::string>("algorithm", c.algorithm);
  r.check_one_of("algorithm", c.algorithm, algorithm_names());
  parse_data(r.child("data"), c.data);
  json net = r.raw("network");
  if (!net.is_null()) {
    TORCH_CHECK_VALUE(net.is_object(), "config: network must be an object, got ",
                      json_type_name(net));
    c.network = net;
  }
  parse_train(r.child("train"), c.train);
  for (const auto& a : algorithm_names()) {
    if (!r.has(a)) continue;
    TORCH_CHECK_VALUE(a == c.algorithm, "config: section '", a, "' is given but algorithm is \"",
                      c.algorithm, "\" (set \"algorithm\": \"", a, "\" or drop the section)");
    TORCH_CHECK_VALUE(algorithm_spec(a).has_section, "config: algorithm \"", a,
                      "\" has no section; drop '", a, "'");
    json sec = r.raw(a);
    TORCH_CHECK_VALUE(sec.is_object(), "config: ", a, " must be an object, got ",
                      json_type_name(sec));
  }
  // The algorithm resolves its section (validated, defaults filled) so config.json is complete.
  const AlgorithmSpec& spec = algorithm_spec(c.algorithm);
  if (spec.has_section) {
    json given = r.raw(c.algorithm);
    c.algorithm_sections[c.algorithm] = spec.resolve(given.is_null() ? json::object() : given);
  }
  r.finish();
  return c;
}

double lr_at_epoch(const TrainConfig& cfg, int64_t epoch) {
  const auto& s = cfg.lr_schedule;
  double base = cfg.optimizer.lr;
  if (epoch < s.warmup_epochs) {
    double f = static_cast<double>(epoch + 1) / static_cast<double>(s.warmup_epochs + 1);
    return base * (0.1 + 0.9 * f);
  }
  int64_t e = epoch - s.warmup_epochs, n = cfg.epochs - s.warmup_epochs;
  if (s.name == "constant") return base;
  if (s.name == "step") return base * std::pow(s.gamma, static_cast<double>(e / s.step_size));
  double progress = n <= 1 ? 0.0 : static_cast<double>(e) / static_cast<double>(n);
  return s.min_lr + 0.5 * (base - s.min_lr) * (1.0 + std::cos(M_PI * progress));
}

data::Splits load_raw_data(const RunConfig& cfg) {
  const DataConfig& d = cfg.data;
  data::Splits s;
  if (d.format == "idx") {
    s = data::load_idx_dir(d.root);
  } else if (d.format == "cifar10") {
    s = data::load_cifar10_dir(d.root);
  } else {
    data::SyntheticOptions o = d.synthetic;
    o.seed = data::derive_seed(cfg.seed, 0x5e7);
    // Same prototypes (same seed), fresh noise and labels for the test part: generate a
    // larger set and cut it.
    o.n = d.synthetic.n + d.synthetic_test_n;
    data::Dataset all = data::make_synthetic(o);
    auto idx = torch::arange(o.n, torch::kLong);
    s.train = all.select(idx.slice(0, 0, d.synthetic.n));
    s.test = all.select(idx.slice(0, d.synthetic.n));
    s.train.name = "synthetic/train";
    s.test.name = "synthetic/test";
  }
  return s;
}

data::Splits load_data(const RunConfig& cfg, torch::Device device) {
  return prepare_data(cfg, load_raw_data(cfg), device);
}

int64_t check_data_sizes(const DataConfig& d, int64_t train_samples) {
  TORCH_CHECK_VALUE(d.val_size < train_samples, "config: data.val_size = ", d.val_size,
                    ". Violated constraint: val_size < training samples (", train_samples, ")");
  const int64_t train = train_samples - d.val_size;
  TORCH_CHECK_VALUE(d.subset <= train, "config: data.subset = ", d.subset,
                    ". Violated constraint: subset <= training samples after the validation "
                    "split (",
                    train, ")");
  return d.subset > 0 ? d.subset : train;
}

data::Splits prepare_data(const RunConfig& cfg, data::Splits s, torch::Device device) {
  const DataConfig& d = cfg.data;
  check_data_sizes(d, s.train.size());
  auto tv = data::split_train_val(s.train, d.val_size, data::derive_seed(cfg.seed, 0x5a1));
  s.train = std::move(tv.first);
  s.val = std::move(tv.second);
  if (d.subset > 0) {
    s.train = data::stratified_subset(s.train, d.subset, data::derive_seed(cfg.seed, 0x5b5));
  }
  if (d.normalize) {
    auto norm = data::Normalizer::fit(s.train);
    norm.apply(s.train);
    norm.apply(s.val);
    norm.apply(s.test);
  }
  for (auto* p : {&s.train, &s.val, &s.test}) {
    p->images = p->images.to(device);
    p->labels = p->labels.to(device);
  }
  return s;
}

}  // namespace qsched::inner
