#include "meta/outer_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <sstream>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/io.h"
#include "inner/network.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"
#include "meta/controller_io.h"
#include "schedules/factory.h"

namespace qsched::meta {

namespace {
constexpr int64_t kMetaStateVersion = 1;

/// Mean of the finite values (NaN when there is none).
double finite_mean(const std::vector<double>& v) {
  double s = 0;
  int64_t n = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, ++n;
  return n ? s / static_cast<double>(n) : NAN;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

/// The config fields that define the trajectory (steps and threads do not change it).
json trajectory_config(const MetaConfig& c) {
  json j = c.to_json();
  j.erase("steps");
  j.erase("threads");
  return j;
}
}  // namespace

MetaTrainer::MetaTrainer(MetaConfig cfg, std::string out_dir, Collective& coll)
    : cfg_(std::move(cfg)), out_(std::move(out_dir)), coll_(coll) {
  controller_ = Controller(cfg_.controller);
  theta_ = controller_->flat_parameters();
  adam_ = std::make_unique<FlatAdam>(cfg_.optimizer, theta_.numel());
  // A PES particle's inner runs live in the process that started them (and only rank 0 writes
  // checkpoints), so PES is one process; its pairs still run in parallel on --threads.
  TORCH_CHECK_VALUE(cfg_.estimator.name != "pes" || coll_.world_size() == 1,
                    "meta config: estimator \"pes\" with WORLD_SIZE=", coll_.world_size(),
                    ". Violated constraint: PES runs in one process (use --threads for cores)");
}

void MetaTrainer::start(bool resume, bool force) {
  if (coll_.rank() == 0) claim_output_dir(out_, "meta-train", resume, force);
  if (resume) {
    load_checkpoint();
    return;
  }
  TORCH_CHECK_VALUE(!file_exists(out_ + "/meta_state.pt"), "output directory '", out_,
                    "' already holds a meta-training run; use --resume or another --out");
  if (coll_.rank() == 0) {
    make_dirs(out_);
    atomic_write(out_ + "/meta_config.json", cfg_.to_json().dump(2) + "\n");
  }
}

double MetaTrainer::task_cost(const Task& t) {
  const inner::RunConfig rc = task_run_config(cfg_, t);
  const DataCache::RawInfo raw = data_.raw_info(rc);
  // The sizes prepare_data checks, checked here on every rank before any member runs (a member
  // failing alone on one rank would look like a lost peer to the others).
  const int64_t samples = inner::check_data_sizes(rc.data, raw.train_samples);
  const std::string key = t.network.dump();
  auto it = net_params_.find(key);
  if (it == net_params_.end()) {
    double n = 0;
    {
      std::lock_guard<std::mutex> lock(global_generator_mutex());
      for (const auto& p :
           inner::build_network(t.network, raw.input, raw.num_classes)->parameters())
        n += static_cast<double>(p.numel());
    }
    it = net_params_.emplace(key, n).first;
  }
  return it->second * static_cast<double>(samples + rc.data.val_size);
}

std::vector<InnerResult> MetaTrainer::evaluate(const std::vector<Task>& tasks,
                                               const std::vector<torch::Tensor>& thetas,
                                               bool* interrupted) {
  TORCH_INTERNAL_ASSERT(thetas.empty() || tasks.size() == thetas.size());  // empty: base only
  // Members: base runs of uncached tasks (first appearance order), then the controllers.
  std::vector<Task> base_tasks;
  for (const auto& t : tasks) {
    if (!base_.count(t.key())) {
      bool seen = false;
      for (const auto& b : base_tasks) seen = seen || b.key() == t.key();
      if (!seen) base_tasks.push_back(t);
    }
  }
  const int64_t nb = static_cast<int64_t>(base_tasks.size());
  const int64_t count = nb + static_cast<int64_t>(thetas.size());
  // Controller modules are built here, on the coordinating thread (their construction must not
  // overlap with trainers being constructed in worker threads).
  std::vector<Controller> ctrls;
  for (const auto& th : thetas) {
    Controller c(cfg_.controller);
    c->set_flat_parameters(th);
    ctrls.push_back(c);
  }
  const json base_spec = cfg_.base_schedule();
  std::vector<double> cost;
  for (int64_t m = 0; m < count; ++m) {
    const Task& t = m < nb ? base_tasks[m] : tasks[m - nb];
    cost.push_back(task_cost(t));
  }
  auto rows = evaluate_members(
      count, 4, cfg_.threads, coll_,
      [&](int64_t m) {
        const Task& t = m < nb ? base_tasks[m] : tasks[m - nb];
        inner::RunConfig rc = task_run_config(cfg_, t);
        std::unique_ptr<sched::Schedule> s;
        if (m >= nb)
          s = std::make_unique<ControllerSchedule>(
              ctrls[m - nb], sched::make_schedule(base_spec, cfg_.quantity(), "base schedule"));
        InnerResult r = run_inner(rc, data_.get(rc), std::move(s));
        return std::vector<double>{r.val_loss, r.val_acc, r.diverged ? 1.0 : 0.0,
                                   r.interrupted ? 1.0 : 0.0};
      },
      cost, &timing_);
  *interrupted = false;
  for (const auto& r : rows) *interrupted = *interrupted || r[3] != 0.0;
  std::vector<InnerResult> out;
  if (*interrupted) return out;
  for (int64_t m = 0; m < count; ++m) {
    InnerResult r;
    r.val_loss = rows[m][0];
    r.val_acc = rows[m][1];
    r.diverged = rows[m][2] != 0.0;
    if (m < nb) {
      base_[base_tasks[m].key()] = {r.diverged ? NAN : r.val_loss, r.val_acc};
    } else {
      out.push_back(r);
    }
  }
  return out;
}

json MetaTrainer::step() {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  timing_ = EvalTiming();
  torch::Tensor theta_before = theta_.clone(), m_before = adam_->m.clone(),
                v_before = adam_->v.clone();
  std::vector<Task> tasks;
  std::vector<torch::Tensor> thetas;
  json row = cfg_.estimator.name == "pes"        ? pes_step()
             : cfg_.estimator.name == "metagrad" ? metagrad_step()
                                                 : es_step(tasks, thetas);
  if (row.is_null()) {
    if (cfg_.estimator.name == "pes") consistent_ = false;
    return row;
  }
  if (cfg_.validate_every > 0 && (step_ % cfg_.validate_every == 0 || step_ == cfg_.steps)) {
    json v = validate();
    if (v.is_null()) {  // interrupted: undo this step, it is recomputed on resume
      theta_ = theta_before;
      adam_->m = m_before;
      adam_->v = v_before;
      --adam_->t;
      --step_;
      if (cfg_.estimator.name == "pes") consistent_ = false;
      return json();
    }
    for (auto it = v.begin(); it != v.end(); ++it) row[it.key()] = it.value();
  }
  row["seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
  row["busy_seconds"] = timing_.busy_seconds;
  row["utilization"] = num(timing_.utilization());
  history_.push_back(row);
  if (coll_.rank() == 0) {
    write_metrics();
    if (step_ % cfg_.checkpoint_every == 0) {
      save_checkpoint();
      save_controller();
    }
  }
  return row;
}

json MetaTrainer::es_step(std::vector<Task>& tasks, std::vector<torch::Tensor>& thetas) {
  const int64_t k = step_, P = cfg_.estimator.pairs, n = theta_.numel();
  const double sigma = cfg_.estimator.sigma;
  auto pool = task_pool(cfg_, false);
  for (int64_t i = 0; i < P; ++i) {
    Task t = sample_task(cfg_, pool, k, i);
    auto eps = perturbation(cfg_.seed, k, i, n) * static_cast<float>(sigma);
    tasks.push_back(t);
    thetas.push_back(theta_ + eps);
    tasks.push_back(t);
    thetas.push_back(theta_ - eps);
  }
  bool stop = false;
  auto res = evaluate(tasks, thetas, &stop);
  if (stop) return json();
  std::vector<double> plus, minus, all, acc;
  int64_t diverged = 0;
  json diverged_tasks = json::array();
  for (int64_t i = 0; i < 2 * P; ++i) {
    double f = fitness_of(res[i], base_.at(tasks[i].key()).first);
    if (!std::isfinite(f)) {
      ++diverged;
      diverged_tasks.push_back(tasks[i].to_json());
    }
    (i % 2 == 0 ? plus : minus).push_back(f);
    all.push_back(f);
    acc.push_back(res[i].val_acc);
  }
  auto g = es_gradient(plus, minus, cfg_.seed, k, n, sigma);
  adam_->step(theta_, g);
  ++step_;
  double best = INFINITY;
  for (double f : all) best = std::min(best, f);
  const double mean = finite_mean(all);
  double base_acc = 0;
  for (const auto& t : tasks) base_acc += base_.at(t.key()).second;
  json row = {{"step", step_},
              {"mean_fitness", num(mean)},
              {"best_fitness", num(best)},
              {"improvement", num(1.0 - mean)},
              {"mean_acc", num(finite_mean(acc))},
              {"base_acc", base_acc / static_cast<double>(tasks.size())},
              {"diverged", diverged},
              {"grad_norm", g.norm().item<double>()},
              {"theta_norm", theta_.norm().item<double>()},
              {"sigma", sigma},
              {"members", 2 * P}};
  if (diverged) row["diverged_tasks"] = diverged_tasks;
  return row;
}

json MetaTrainer::pes_step() {
  const int64_t k = step_, P = cfg_.estimator.pairs, n = theta_.numel();
  const double sigma = cfg_.estimator.sigma;
  constexpr double kCap = 10.0;  // worst fitness of a segment (finite: raw differences)
  if (particles_.empty()) particles_.resize(P);
  auto pool = task_pool(cfg_, false);
  const json base_spec = cfg_.base_schedule();
  // Start free particles; base results of their tasks (full base runs, cached).
  std::vector<Task> need;
  for (int64_t i = 0; i < P; ++i) {
    Particle& p = particles_[i];
    if (!p.active) {
      p = Particle();
      p.active = true;
      p.task = sample_task(cfg_, pool, k, i);
      p.acc = torch::zeros({n}, torch::kFloat);
    }
    for (int s = 0; s < 2; ++s)
      if (!p.ctrl[s]) p.ctrl[s] = Controller(cfg_.controller);
    if (!base_.count(p.task.key())) need.push_back(p.task);
  }
  bool stop = false;
  if (!need.empty()) evaluate(need, {}, &stop);
  if (stop) return json();
  std::vector<int64_t> until(P);
  for (int64_t i = 0; i < P; ++i) {
    Particle& p = particles_[i];
    auto eps = perturbation(cfg_.seed, k, i, n);
    p.acc.add_(eps);
    p.ctrl[0]->set_flat_parameters(theta_ + eps * static_cast<float>(sigma));
    p.ctrl[1]->set_flat_parameters(theta_ - eps * static_cast<float>(sigma));
  }
  const int64_t T = task_run_config(cfg_, particles_[0].task).train.epochs;
  for (int64_t i = 0; i < P; ++i)
    until[i] = std::min(T, particles_[i].epoch + cfg_.estimator.segment_epochs);
  std::vector<double> cost;  // remaining epochs x task size
  for (int64_t m = 0; m < 2 * P; ++m) {
    const Particle& p = particles_[m / 2];
    cost.push_back(task_cost(p.task) * static_cast<double>(until[m / 2] - p.epoch));
  }
  auto rows = evaluate_members(
      2 * P, 4, cfg_.threads, coll_,
      [&](int64_t m) {
        Particle& p = particles_[m / 2];
        const int s = static_cast<int>(m % 2);
        inner::RunConfig rc = task_run_config(cfg_, p.task);
        if (!p.trainer[s]) {
          auto cs = std::make_unique<ControllerSchedule>(
              p.ctrl[s], sched::make_schedule(base_spec, cfg_.quantity(), "base schedule"));
          p.schedule[s] = cs.get();
          p.trainer[s] = std::make_unique<inner::Trainer>(rc, data_.get(rc),
                                                          inner::make_algorithm(rc, std::move(cs)));
          if (!p.resume_file[s].empty()) {
            p.trainer[s]->load_checkpoint(p.resume_file[s]);
            if (p.resume_hidden[s].defined() && p.resume_hidden[s].numel() > 0)
              p.schedule[s]->set_hidden(p.resume_hidden[s]);
            p.resume_file[s].clear();
          }
        }
        inner::Trainer& t = *p.trainer[s];
        auto term = t.run(until[m / 2]);
        if (term == inner::Termination::kInterrupted)
          return std::vector<double>{NAN, NAN, 0.0, 1.0};
        if (term == inner::Termination::kDiverged)
          return std::vector<double>{INFINITY, 0.0, 1.0, 0.0};
        if (until[m / 2] < rc.train.epochs) {
          const json& last = t.history().back();
          return std::vector<double>{last["val_loss"].get<double>(), last["val_acc"].get<double>(),
                                     0.0, 0.0};
        }
        json summary;
        t.algorithm().finish(t, summary);
        auto ev = t.eval_on(t.data().val);
        return std::vector<double>{ev.loss, ev.acc, std::isfinite(ev.loss) ? 0.0 : 1.0, 0.0};
      },
      cost, &timing_);
  for (const auto& r : rows)
    if (r[3] != 0.0) return json();
  auto g = torch::zeros({n}, torch::kFloat);
  std::vector<double> all, acc;
  int64_t diverged = 0, finished = 0;
  for (int64_t i = 0; i < P; ++i) {
    Particle& p = particles_[i];
    double f[2];
    bool dead = false;
    for (int s = 0; s < 2; ++s) {
      const auto& r = rows[2 * i + s];
      f[s] = std::min(fitness_of({r[0], r[1], r[2] != 0.0, false}, base_.at(p.task.key()).first),
                      kCap);
      if (r[2] != 0.0) ++diverged, dead = true;
      all.push_back(f[s]);
      acc.push_back(r[1]);
    }
    g.add_(p.acc, static_cast<float>(f[0] - f[1]));
    p.epoch = until[i];
    if (dead || p.epoch >= T) {  // end of the inner horizon: free the particle
      ++finished;
      p.active = false;
      for (int s = 0; s < 2; ++s) p.trainer[s].reset(), p.schedule[s] = nullptr;
    }
  }
  g.div_(static_cast<float>(2.0 * static_cast<double>(P) * sigma));
  adam_->step(theta_, g);
  ++step_;
  double best = INFINITY;
  for (double f : all) best = std::min(best, f);
  const double mean = finite_mean(all);
  return {{"step", step_},
          {"mean_fitness", num(mean)},
          {"best_fitness", num(best)},
          {"improvement", num(1.0 - mean)},
          {"mean_acc", num(finite_mean(acc))},
          {"diverged", diverged},
          {"finished_runs", finished},
          {"grad_norm", g.norm().item<double>()},
          {"theta_norm", theta_.norm().item<double>()},
          {"sigma", sigma},
          {"members", 2 * P}};
}

SegmentMetaGrad segment_metagrad(inner::Trainer& t, ControllerSchedule& schedule, Controller& ctrl,
                                 int64_t K, const MetaGradOptions& options) {
  auto* ana = dynamic_cast<inner::ana::AnaAlgorithm*>(&t.algorithm());
  TORCH_CHECK_VALUE(ana != nullptr, "metagrad estimator: algorithm = \"", t.algorithm().name(),
                    "\"; it needs \"ana\"");
  auto& driver = ana->driver();
  const int64_t e = t.epoch();
  TORCH_CHECK_VALUE(e >= driver.start() && e < driver.start() + driver.epochs(),
                    "metagrad estimator: epoch ", e, " is not a quantization epoch (",
                    driver.start(), " .. ", driver.start() + driver.epochs() - 1, ")");
  if (!driver.recorded(e)) ana->on_epoch_start(t, e);  // the schedule sees epoch e's context
  torch::Tensor sigma = schedule.last_values_with_grad();
  MetaGradResult r = metagrad(t, sigma, K, options);
  ctrl->zero_grad();
  sigma.backward(r.dsigma);
  std::vector<torch::Tensor> g;
  for (const auto& p : ctrl->parameters())
    g.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.dtype()));
  SegmentMetaGrad out;
  out.meta_loss = r.meta_loss;
  out.hard_loss = r.hard_loss;
  out.hard_acc = r.hard_acc;
  out.sigma = sigma.detach();
  out.grad = torch::cat(g);
  return out;
}

json MetaTrainer::metagrad_step() {
  const int64_t k = step_, P = cfg_.estimator.pairs, n = theta_.numel();
  auto pool = task_pool(cfg_, false);
  const json base_spec = cfg_.base_schedule();
  std::vector<Task> tasks;
  std::vector<double> cost;
  for (int64_t i = 0; i < P; ++i) {
    tasks.push_back(sample_task(cfg_, pool, k, i));
    cost.push_back(task_cost(tasks[i]));
  }
  const MetaGradOptions mopt;
  // Row of task i: meta_loss, hard_loss, hard_acc, diverged, interrupted, epoch, grad[n].
  constexpr int64_t kHead = 6;
  auto rows = evaluate_members(
      P, kHead + n, cfg_.threads, coll_,
      [&](int64_t i) {
        std::vector<double> row(kHead + n, 0.0);
        inner::RunConfig rc = task_run_config(cfg_, tasks[i]);
        Controller ctrl(cfg_.controller);
        ctrl->set_flat_parameters(theta_);
        auto cs = std::make_unique<ControllerSchedule>(
            ctrl, sched::make_schedule(base_spec, cfg_.quantity(), "base schedule"));
        ControllerSchedule* sp = cs.get();
        inner::Trainer t(rc, data_.get(rc), inner::make_algorithm(rc, std::move(cs)));
        auto& driver = dynamic_cast<inner::ana::AnaAlgorithm&>(t.algorithm()).driver();
        TORCH_CHECK_VALUE(driver.epochs() >= 2,
                          "meta config: estimator \"metagrad\" needs >= 2 ANA "
                          "quantization epochs (train.epochs - ana.pretrain_epochs), got ",
                          driver.epochs());
        const uint64_t draw = data::derive_seed(data::derive_seed(cfg_.seed, 0x3e7a, k), 0x5e9, i);
        const int64_t e = driver.start() + static_cast<int64_t>(draw % (driver.epochs() - 1));
        row[5] = static_cast<double>(e);
        auto term = t.run(e);
        if (term == inner::Termination::kInterrupted) {
          row[4] = 1.0;
          return row;
        }
        if (term == inner::Termination::kDiverged) {
          row[3] = 1.0;
          return row;
        }
        SegmentMetaGrad s = segment_metagrad(t, *sp, ctrl, cfg_.estimator.unroll, mopt);
        row[0] = s.meta_loss;
        row[1] = s.hard_loss;
        row[2] = s.hard_acc;
        if (!std::isfinite(s.meta_loss) || !torch::isfinite(s.grad).all().item<bool>()) {
          row[3] = 1.0;
          return row;
        }
        auto g = s.grad.to(torch::kDouble).contiguous();
        std::copy(g.data_ptr<double>(), g.data_ptr<double>() + n, row.begin() + kHead);
        return row;
      },
      cost, &timing_);
  for (const auto& r : rows)
    if (r[4] != 0.0) return json();
  auto g = torch::zeros({n}, torch::kDouble);
  std::vector<double> loss, hard, acc;
  int64_t diverged = 0;
  json epochs = json::array();
  for (int64_t i = 0; i < P; ++i) {
    const auto& r = rows[i];
    epochs.push_back(static_cast<int64_t>(r[5]));
    if (r[3] != 0.0) {
      ++diverged;
      continue;
    }
    loss.push_back(r[0]);
    hard.push_back(r[1]);
    acc.push_back(r[2]);
    g.add_(torch::tensor(std::vector<double>(r.begin() + kHead, r.end()), torch::kDouble));
  }
  g = (g / static_cast<double>(P)).to(torch::kFloat);
  adam_->step(theta_, g);
  ++step_;
  return {{"step", step_},
          {"meta_loss", num(finite_mean(loss))},
          {"hard_loss", num(finite_mean(hard))},
          {"mean_acc", num(finite_mean(acc))},
          {"diverged", diverged},
          {"segment_epochs", epochs},
          {"unroll", cfg_.estimator.unroll},
          {"grad_norm", g.norm().item<double>()},
          {"theta_norm", theta_.norm().item<double>()},
          {"members", P}};
}

json MetaTrainer::validate() {
  auto pool = task_pool(cfg_, true);
  std::vector<torch::Tensor> thetas(pool.size(), theta_);
  bool stop = false;
  auto res = evaluate(pool, thetas, &stop);
  if (stop) return json();
  std::vector<double> fit, acc, base_acc;
  for (size_t i = 0; i < pool.size(); ++i) {
    fit.push_back(fitness_of(res[i], base_.at(pool[i].key()).first));
    acc.push_back(res[i].val_acc);
    base_acc.push_back(base_.at(pool[i].key()).second);
  }
  const double f = finite_mean(fit);
  return {{"val_fitness", num(f)},
          {"val_improvement", num(1.0 - f)},
          {"val_acc", num(finite_mean(acc))},
          {"val_base_acc", num(finite_mean(base_acc))},
          {"val_tasks", static_cast<int64_t>(pool.size())}};
}

bool MetaTrainer::run(int64_t until, MetaCallbacks* cb) {
  while (step_ < until) {
    // Ranks must agree: a signal that reached one rank only would otherwise leave the others
    // waiting in the next collective for a rank that has gone.
    bool stop = interrupted();
    if (coll_.world_size() > 1)
      for (const auto& flag : coll_.allgather({stop ? 1.0 : 0.0})) stop = stop || flag.at(0) != 0;
    if (stop) return false;
    json row = step();
    if (row.is_null()) return false;
    if (cb) cb->on_step(row);
  }
  return true;
}

void MetaTrainer::write_metrics() const {
  std::string text;
  for (const auto& r : history_) text += r.dump() + "\n";
  atomic_write(out_ + "/meta_metrics.jsonl", text);
}

void MetaTrainer::save_checkpoint() const {
  if (coll_.rank() != 0) return;
  if (!consistent_) {  // an abandoned PES step left the inner runs mid-segment
    std::fprintf(stderr,
                 "meta-state not saved: the interrupted step left the PES inner runs "
                 "mid-segment; --resume continues from the last periodic checkpoint\n");
    return;
  }
  torch::serialize::OutputArchive a;
  a.write("version", c10::IValue(kMetaStateVersion));
  a.write("config", c10::IValue(trajectory_config(cfg_).dump()));
  a.write("step", c10::IValue(step_));
  a.write("theta", theta_, /*is_buffer=*/true);
  a.write("adam_m", adam_->m, true);
  a.write("adam_v", adam_->v, true);
  a.write("adam_t", c10::IValue(adam_->t));
  json base = json::object();
  for (const auto& [key, v] : base_) base[key] = {num(v.first), v.second};
  a.write("base_cache", c10::IValue(base.dump()));
  json hist = history_;
  a.write("history", c10::IValue(hist.dump()));
  // PES particles: state here, inner trainers in files named after the step (written first, so
  // the meta-state never points to a file that does not exist yet).
  json parts = json::array();
  std::vector<std::string> files;
  for (size_t i = 0; i < particles_.size(); ++i) {
    const Particle& p = particles_[i];
    json pj = {{"active", p.active}};
    if (p.active) {
      pj["task"] = p.task.to_json();
      pj["epoch"] = p.epoch;
      a.write("pes" + std::to_string(i) + ".acc", p.acc, true);
      for (int s = 0; s < 2; ++s) {
        std::string key = "pes" + std::to_string(i) + "." + std::to_string(s);
        std::string file;
        if (p.trainer[s]) {
          file = "pes_" + std::to_string(step_) + "_" + std::to_string(i) + "_" +
                 std::to_string(s) + ".pt";
          p.trainer[s]->save_checkpoint(out_ + "/" + file);
          torch::Tensor h = p.schedule[s]->hidden();
          a.write(key + ".hidden", h.defined() ? h : torch::zeros({0}), true);
          files.push_back(file);
        } else if (!p.resume_file[s].empty()) {  // not run since the resume: keep its file
          file = p.resume_file[s].substr(p.resume_file[s].rfind('/') + 1);
          a.write(key + ".hidden", p.resume_hidden[s], true);
          files.push_back(file);
        }
        pj["file" + std::to_string(s)] = file;
      }
    }
    parts.push_back(pj);
  }
  a.write("pes", c10::IValue(parts.dump()));
  make_dirs(out_);
  write_archive(out_ + "/meta_state.pt", a, "meta-state");
  // Trainer checkpoints of earlier steps are no longer referenced.
  std::string prefix = "pes_";
  for (int64_t old = std::max<int64_t>(0, step_ - 64); old < step_; ++old)
    for (size_t i = 0; i < particles_.size(); ++i)
      for (int s = 0; s < 2; ++s) {
        std::string f = prefix + std::to_string(old) + "_" + std::to_string(i) + "_" +
                        std::to_string(s) + ".pt";
        if (std::find(files.begin(), files.end(), f) == files.end())
          std::remove((out_ + "/" + f).c_str());
      }
}

void MetaTrainer::load_checkpoint() {
  const std::string path = out_ + "/meta_state.pt";
  TORCH_CHECK_VALUE(file_exists(path), "meta checkpoint '", path,
                    "' does not exist (nothing to resume)");
  ArchiveReader r(path, "meta-state", "meta checkpoint");
  auto& a = r.archive();
  try {
    r.check_version(kMetaStateVersion);
    TORCH_CHECK_VALUE(json::parse(r.read("config").toStringRef()) == trajectory_config(cfg_),
                      "meta checkpoint '", path,
                      "' was written for a different meta config; resume with the run's own "
                      "meta_config.json");
    step_ = r.read("step").toInt();
    torch::Tensor theta, m, v;
    a.read("theta", theta, true);
    a.read("adam_m", m, true);
    a.read("adam_v", v, true);
    TORCH_CHECK_VALUE(theta.numel() == theta_.numel() && m.numel() == theta_.numel() &&
                          v.numel() == theta_.numel(),
                      "meta checkpoint '", path, "' holds ", theta.numel(),
                      " controller parameters, the config needs ", theta_.numel());
    theta_ = theta;
    adam_->m = m;
    adam_->v = v;
    adam_->t = r.read("adam_t").toInt();
    base_.clear();
    const json cache = json::parse(r.read("base_cache").toStringRef());
    for (auto& [key, val] : cache.items())
      base_[key] = {val[0].is_null() ? NAN : val[0].get<double>(), val[1].get<double>()};
    history_.clear();
    for (auto& row : json::parse(r.read("history").toStringRef())) history_.push_back(row);
    particles_.clear();
    c10::IValue pes;
    if (a.try_read("pes", pes)) {
      const json parts = json::parse(pes.toStringRef());
      for (size_t i = 0; i < parts.size(); ++i) {
        Particle p;
        p.active = parts[i].at("active").get<bool>();
        if (p.active) {
          const json& t = parts[i].at("task");
          p.task.network = t.at("network");
          p.task.subset = t.at("subset").get<int64_t>();
          p.task.seed = t.at("seed").get<uint64_t>();
          p.epoch = parts[i].at("epoch").get<int64_t>();
          a.read("pes" + std::to_string(i) + ".acc", p.acc, true);
          for (int s = 0; s < 2; ++s) {
            std::string file = parts[i].at("file" + std::to_string(s)).get<std::string>();
            if (file.empty()) continue;
            p.resume_file[s] = out_ + "/" + file;
            TORCH_CHECK_VALUE(file_exists(p.resume_file[s]), "meta checkpoint '", path,
                              "' needs the inner checkpoint '", p.resume_file[s],
                              "', which does not exist");
            a.read("pes" + std::to_string(i) + "." + std::to_string(s) + ".hidden",
                   p.resume_hidden[s], true);
          }
        }
        particles_.push_back(std::move(p));
      }
    }
  } catch (const c10::ValueError&) {
    throw;
  } catch (const std::exception& e) {
    r.fail("does not fit this run (" + one_line(e) + ")");
  }
  TORCH_CHECK_VALUE(step_ >= 0 && static_cast<int64_t>(history_.size()) == step_,
                    "meta checkpoint '", path, "' is inconsistent (step ", step_, ")");
}

namespace {

std::string tensor_hex(const torch::Tensor& t) {
  static const char* kHex = "0123456789abcdef";
  torch::Tensor c = t.contiguous();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s += kHex[p[i] >> 4];
    s += kHex[p[i] & 15];
  }
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// A tensor shaped and typed like `like` from tensor_hex's text.
torch::Tensor tensor_from_hex(const std::string& hex, const torch::Tensor& like,
                              const char* field) {
  torch::Tensor t = torch::empty_like(like, torch::MemoryFormat::Contiguous);
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  TORCH_CHECK_VALUE(hex.size() == 2 * n, "meta state from rank 0: '", field, "' has ",
                    hex.size() / 2, " bytes, the config needs ", n);
  auto* p = static_cast<unsigned char*>(t.data_ptr());
  for (size_t i = 0; i < n; ++i) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    TORCH_CHECK_VALUE(hi >= 0 && lo >= 0, "meta state from rank 0: '", field,
                      "' is not lower-case hex");
    p[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return t;
}

}  // namespace

std::string MetaTrainer::export_state() const {
  TORCH_CHECK(particles_.empty() && cfg_.estimator.name != "pes",
              "export_state: PES state stays in one process");
  json base = json::object();
  for (const auto& [key, v] : base_) base[key] = {num(v.first), num(v.second)};
  json j = {{"version", kMetaStateVersion},
            {"config", trajectory_config(cfg_)},
            {"step", step_},
            {"adam_t", adam_->t},
            {"theta", tensor_hex(theta_)},
            {"adam_m", tensor_hex(adam_->m)},
            {"adam_v", tensor_hex(adam_->v)},
            {"base_cache", base},
            {"history", history_}};
  return j.dump();
}

void MetaTrainer::import_state(const std::string& text) {
  int64_t step = 0, adam_t = 0;
  torch::Tensor theta, m, v;
  std::map<std::string, std::pair<double, double>> base;
  std::vector<json> history;
  try {
    const json j = json::parse(text);
    TORCH_CHECK_VALUE(j.is_object() && j.value("version", json()) == json(kMetaStateVersion),
                      "meta state from rank 0: not version ", kMetaStateVersion);
    TORCH_CHECK_VALUE(j.at("config") == trajectory_config(cfg_),
                      "meta state from rank 0: written for a different meta config");
    step = j.at("step").get<int64_t>();
    adam_t = j.at("adam_t").get<int64_t>();
    theta = tensor_from_hex(j.at("theta").get<std::string>(), theta_, "theta");
    m = tensor_from_hex(j.at("adam_m").get<std::string>(), adam_->m, "adam_m");
    v = tensor_from_hex(j.at("adam_v").get<std::string>(), adam_->v, "adam_v");
    auto number = [](const json& x) { return x.is_null() ? NAN : x.get<double>(); };
    for (auto& [key, val] : j.at("base_cache").items()) {
      TORCH_CHECK_VALUE(val.is_array() && val.size() == 2,
                        "meta state from rank 0: base_cache entry '", key, "' is not a pair");
      base[key] = {number(val[0]), number(val[1])};
    }
    for (const auto& row : j.at("history")) history.push_back(row);
  } catch (const c10::ValueError&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK_VALUE(false, "meta state from rank 0 is malformed: ", e.what());
  }
  TORCH_CHECK_VALUE(step >= 0 && adam_t >= 0 && static_cast<int64_t>(history.size()) == step,
                    "meta state from rank 0 is inconsistent (step ", step, ", ", history.size(),
                    " metric rows, Adam step ", adam_t, ")");
  step_ = step;
  theta_ = theta;
  adam_->m = m;
  adam_->v = v;
  adam_->t = adam_t;
  base_ = std::move(base);
  history_ = std::move(history);
}

void MetaTrainer::save_controller(const std::string& dir) const {
  if (coll_.rank() != 0) return;
  Controller c(cfg_.controller);
  c->set_flat_parameters(theta_);
  meta::save_controller(dir.empty() ? out_ : dir, c, cfg_.algorithm(), cfg_.quantity(),
                        cfg_.base_schedule(), {{"step", step_}, {"seed", cfg_.seed}});
}

}  // namespace qsched::meta
