#include "meta/task.h"

#include <cmath>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/base/json_reader.h"
#include "inner/inq/inq.h"
#include "inner/trainer.h"
#include "schedules/factory.h"

namespace qsched::meta {

namespace {
constexpr uint64_t kSaltTrainSeeds = 0x7a5c, kSaltValSeeds = 0x7a1d, kSaltSample = 0x5a3b;

TaskFamily parse_family(JsonReader r) {
  TaskFamily f;
  json nets = r.raw("networks");
  TORCH_CHECK_VALUE(nets.is_array() && !nets.empty(), "meta config: ", r.full("networks"),
                    " must be a non-empty array of network specs (inner/network.h)");
  for (const auto& n : nets) {
    TORCH_CHECK_VALUE(n.is_object(), "meta config: ", r.full("networks"),
                      " entries must be network spec objects, got ", json_type_name(n));
    f.networks.push_back(n);
  }
  json subsets = r.raw("subsets");
  if (subsets.is_null()) subsets = json::array({0});
  TORCH_CHECK_VALUE(subsets.is_array() && !subsets.empty(), "meta config: ", r.full("subsets"),
                    " must be a non-empty array of subset sizes (0 = all)");
  for (const auto& s : subsets) {
    TORCH_CHECK_VALUE(s.is_number_integer() && s.get<int64_t>() >= 0,
                      "meta config: ", r.full("subsets"), " entry ", s.dump(),
                      ". Violated constraint: an integer >= 0");
    f.subsets.push_back(s.get<int64_t>());
  }
  f.seeds = r.get<int64_t>("seeds", 1);
  r.check(f.seeds >= 1 && f.seeds <= 1000, "seeds", f.seeds, "1 <= seeds <= 1000");
  r.finish();
  return f;
}

json family_json(const TaskFamily& f) {
  return {{"networks", f.networks}, {"subsets", f.subsets}, {"seeds", f.seeds}};
}
}  // namespace

std::string Task::key() const {
  return network.dump() + "|" + std::to_string(subset) + "|" + std::to_string(seed);
}

sched::Quantity MetaConfig::quantity() const {
  return *inner::algorithm_spec(algorithm()).quantity;
}

json MetaConfig::base_schedule() const {
  return inner::algorithm_spec(algorithm()).schedule_of(run.at(algorithm()));
}

json MetaConfig::to_json() const {
  json j = {{"seed", seed},
            {"threads", threads},
            {"steps", steps},
            {"validate_every", validate_every},
            {"checkpoint_every", checkpoint_every},
            {"run", run},
            {"tasks", family_json(tasks)},
            {"validation", family_json(validation)},
            {"controller", controller.to_json()},
            {"estimator",
             {{"name", estimator.name},
              {"pairs", estimator.pairs},
              {"sigma", estimator.sigma},
              {"segment_epochs", estimator.segment_epochs}}},
            {"optimizer",
             {{"lr", optimizer.lr()},
              {"weight_decay", optimizer.weight_decay()},
              {"beta1", optimizer.beta1()},
              {"beta2", optimizer.beta2()}}}};
  // Only metagrad configs carry "unroll" (older es/pes checkpoints keep their config identity).
  if (estimator.name == "metagrad") j["estimator"]["unroll"] = estimator.unroll;
  return j;
}

MetaConfig MetaConfig::from_json(const json& j) {
  MetaConfig c;
  JsonReader r(j, "", "meta config");
  c.seed = r.get<uint64_t>("seed", c.seed);
  c.threads = r.get<int>("threads", c.threads);
  r.check(c.threads >= 1 && c.threads <= 256, "threads", c.threads, "1 <= threads <= 256");
  c.steps = r.get<int64_t>("steps", c.steps);
  r.check(c.steps >= 1 && c.steps <= 1000000, "steps", c.steps, "1 <= steps <= 1000000");
  c.validate_every = r.get<int64_t>("validate_every", c.validate_every);
  r.check(c.validate_every >= 0, "validate_every", c.validate_every, "validate_every >= 0");
  c.checkpoint_every = r.get<int64_t>("checkpoint_every", c.checkpoint_every);
  r.check(c.checkpoint_every >= 1, "checkpoint_every", c.checkpoint_every, "checkpoint_every >= 1");
  json run = r.raw("run");
  TORCH_CHECK_VALUE(run.is_object(),
                    "meta config: missing required object 'run' (the inner run "
                    "template, a run config as in experiments/configs/)");
  inner::RunConfig rc = inner::parse_run_config(run);
  inner::scheduled_algorithm(rc.algorithm, "meta config: run.algorithm");
  c.run = rc.to_json();
  if (!c.run.contains(rc.algorithm)) c.run[rc.algorithm] = json::object();
  c.tasks = parse_family(r.child("tasks"));
  c.validation = parse_family(r.child("validation"));
  c.controller = ControllerOptions::from_json(
      r.raw("controller").is_null() ? json::object() : r.raw("controller"), "controller");
  c.controller.seed(data::derive_seed(c.seed, 0xc7));
  {
    JsonReader e = r.child("estimator");
    c.estimator.name = e.get<std::string>("name", c.estimator.name);
    e.check_one_of("name", c.estimator.name, {"es", "pes", "metagrad"});
    TORCH_CHECK_VALUE(
        c.estimator.name != "metagrad" || inner::algorithm_spec(c.algorithm()).differentiable,
        "meta config: estimator.name = \"metagrad\" needs an algorithm whose run is "
        "differentiable in its schedule, such as \"ana\" (got \"",
        c.algorithm(), "\")");
    c.estimator.pairs = e.get<int64_t>("pairs", c.estimator.pairs);
    e.check(c.estimator.pairs >= 1 && c.estimator.pairs <= 1024, "pairs", c.estimator.pairs,
            "1 <= pairs <= 1024");
    c.estimator.sigma = e.get<double>("sigma", c.estimator.sigma);
    c.estimator.segment_epochs = e.get<int64_t>("segment_epochs", c.estimator.segment_epochs);
    e.check(c.estimator.segment_epochs >= 1, "segment_epochs", c.estimator.segment_epochs,
            "segment_epochs >= 1");
    c.estimator.unroll = e.get<int64_t>("unroll", c.estimator.unroll);
    e.check(c.estimator.unroll >= 1 && c.estimator.unroll <= 100000, "unroll", c.estimator.unroll,
            "1 <= unroll <= 100000");
    e.check(std::isfinite(c.estimator.sigma) && c.estimator.sigma > 0, "sigma", c.estimator.sigma,
            "sigma > 0");
    e.finish();
  }
  {
    JsonReader o = r.child("optimizer");
    c.optimizer.lr(o.get<double>("lr", c.optimizer.lr()));
    o.check(std::isfinite(c.optimizer.lr()) && c.optimizer.lr() > 0, "lr", c.optimizer.lr(),
            "lr > 0");
    c.optimizer.weight_decay(o.get<double>("weight_decay", c.optimizer.weight_decay()));
    o.check(std::isfinite(c.optimizer.weight_decay()) && c.optimizer.weight_decay() >= 0,
            "weight_decay", c.optimizer.weight_decay(), "weight_decay >= 0");
    c.optimizer.beta1(o.get<double>("beta1", c.optimizer.beta1()));
    o.check(c.optimizer.beta1() >= 0 && c.optimizer.beta1() < 1, "beta1", c.optimizer.beta1(),
            "0 <= beta1 < 1");
    c.optimizer.beta2(o.get<double>("beta2", c.optimizer.beta2()));
    o.check(c.optimizer.beta2() >= 0 && c.optimizer.beta2() < 1, "beta2", c.optimizer.beta2(),
            "0 <= beta2 < 1");
    o.finish();
  }
  r.finish();
  // The base schedule must be a valid hand-coded schedule of the right quantity, and every task
  // a valid run config.
  std::string what = "meta config: run." + c.algorithm() + ".schedule";
  auto base = sched::make_schedule(c.base_schedule(), c.quantity(), what);
  TORCH_CHECK_VALUE(base->is_static(), what, " must be a hand-coded (static) schedule");
  for (bool val : {false, true})
    for (const auto& t : task_pool(c, val)) task_run_config(c, t);
  return c;
}

std::vector<Task> task_pool(const MetaConfig& cfg, bool validation) {
  const TaskFamily& f = validation ? cfg.validation : cfg.tasks;
  std::vector<Task> pool;
  for (const auto& n : f.networks)
    for (int64_t s : f.subsets)
      for (int64_t k = 0; k < f.seeds; ++k) {
        Task t;
        t.network = n;
        t.subset = s;
        // Seeds kept below 2^31 so that they print and parse as plain JSON integers.
        t.seed = data::derive_seed(cfg.seed, validation ? kSaltValSeeds : kSaltTrainSeeds, k) %
                 (uint64_t{1} << 31);
        pool.push_back(t);
      }
  return pool;
}

Task sample_task(const MetaConfig& cfg, const std::vector<Task>& pool, int64_t step, int64_t pair) {
  TORCH_CHECK(!pool.empty(), "sample_task: empty pool");
  uint64_t r = data::derive_seed(data::derive_seed(cfg.seed, kSaltSample, step), 2, pair);
  return pool[r % pool.size()];
}

inner::RunConfig task_run_config(const MetaConfig& cfg, const Task& task) {
  json r = cfg.run;
  r["network"] = task.network;
  r["data"]["subset"] = task.subset;
  r["seed"] = task.seed;
  r["threads"] = 1;
  return inner::parse_run_config(r);
}

InnerResult run_inner(const inner::RunConfig& cfg, const data::Splits& data,
                      std::unique_ptr<sched::Schedule> schedule) {
  InnerResult res;
  inner::Trainer t(cfg, data, inner::make_algorithm(cfg, std::move(schedule)));
  auto term = t.run(cfg.train.epochs);
  if (term == inner::Termination::kInterrupted) {
    res.interrupted = true;
    return res;
  }
  if (term == inner::Termination::kDiverged) {
    res.diverged = true;
    res.val_loss = INFINITY;
    return res;
  }
  json s;
  t.algorithm().finish(t, s);
  auto ev = t.eval_on(t.data().val);
  res.val_loss = ev.loss;
  res.val_acc = ev.acc;
  res.diverged = !std::isfinite(ev.loss);
  return res;
}

double fitness_of(const InnerResult& r, double base_val_loss) {
  if (r.diverged || !std::isfinite(r.val_loss) || !std::isfinite(base_val_loss) ||
      base_val_loss <= 0)
    return INFINITY;
  return r.val_loss / base_val_loss;
}

std::shared_ptr<const data::Splits> DataCache::raw_locked(const inner::RunConfig& cfg) {
  json d = cfg.to_json()["data"];
  d.erase("subset");
  d.erase("val_size");
  std::string key = d.dump() + (cfg.data.format == "synthetic" ? std::to_string(cfg.seed) : "");
  if (key != raw_key_ || !raw_) {
    data::Splits raw = inner::load_raw_data(cfg);
    // Meta-training never looks at the test files: keep a token test set (no copy of 10k
    // normalized images per task).
    raw.test = raw.test.select(torch::arange(std::min<int64_t>(raw.test.size(), 16)));
    raw_ = std::make_shared<const data::Splits>(std::move(raw));
    raw_key_ = key;
    ++generation_;
    prepared_.clear();  // threads still preparing or waiting keep their own future and raw copy
    bytes_.clear();
    lru_.clear();
    prepared_bytes_ = 0;
  }
  return raw_;
}

DataCache::RawInfo DataCache::raw_info(const inner::RunConfig& cfg) {
  std::lock_guard<std::mutex> lock(mutex_);
  const data::Splits& raw = *raw_locked(cfg);
  const auto& im = raw.train.images;
  return {{im.size(1), im.size(2), im.size(3)}, raw.train.num_classes, raw.train.size()};
}

data::Splits DataCache::get(const inner::RunConfig& cfg) {
  // The split depends on the data section and the seed only (not the network).
  const std::string pkey = cfg.to_json()["data"].dump() + "|" + std::to_string(cfg.seed);
  std::shared_ptr<const data::Splits> raw;
  std::promise<data::Splits> mine;
  std::shared_future<data::Splits> ready;
  int64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    raw = raw_locked(cfg);
    generation = generation_;
    auto it = prepared_.find(pkey);
    if (it != prepared_.end()) {
      lru_.remove(pkey);
      lru_.push_front(pkey);
      ready = it->second;
    } else {
      prepared_[pkey] = mine.get_future().share();
      lru_.push_front(pkey);
    }
  }
  if (ready.valid()) return ready.get();  // prepared, or being prepared by another thread
  data::Splits s;
  try {
    s = inner::prepare_data(cfg, *raw, torch::kCPU);
  } catch (...) {
    mine.set_exception(std::current_exception());
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation == generation_) {  // the next request tries again (and fails the same way)
      prepared_.erase(pkey);
      lru_.remove(pkey);
    }
    throw;
  }
  mine.set_value(s);
  int64_t b = 0;
  for (const auto* d : {&s.train, &s.val, &s.test})
    b += d->images.numel() * d->images.element_size() + d->labels.numel() * 8;
  std::lock_guard<std::mutex> lock(mutex_);
  if (generation != generation_) return s;  // the raw data changed meanwhile: not cached
  bytes_[pkey] = b;
  prepared_bytes_ += b;
  // Evict the least recently used ready splits (never one being prepared, never the newest).
  for (auto it = lru_.end(); prepared_bytes_ > kMaxPreparedBytes && it != lru_.begin();) {
    --it;
    if (*it == pkey || !bytes_.count(*it)) continue;
    prepared_bytes_ -= bytes_.at(*it);
    bytes_.erase(*it);
    prepared_.erase(*it);
    it = lru_.erase(it);
  }
  return s;
}

}  // namespace qsched::meta
