#include "meta/es.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "datasets/dataset.h"

namespace qsched::meta {

namespace {
constexpr uint64_t kSaltPerturbation = 0xe5e5;
}

torch::Tensor perturbation(uint64_t seed, int64_t step, int64_t pair, int64_t n) {
  uint64_t s = data::derive_seed(data::derive_seed(seed, kSaltPerturbation, step), 1, pair);
  auto gen = at::detail::createCPUGenerator(s);
  return at::normal(0.0, 1.0, {n}, gen, torch::TensorOptions().dtype(torch::kFloat));
}

std::vector<double> centered_ranks(const std::vector<double>& fitness) {
  const size_t n = fitness.size();
  std::vector<double> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = std::isnan(fitness[i]) ? INFINITY : fitness[i];
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return f[a] < f[b]; });
  std::vector<double> r(n, 0.0);
  if (n < 2) return r;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && f[idx[j + 1]] == f[idx[i]]) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + j);
    for (size_t k = i; k <= j; ++k) r[idx[k]] = mean_rank / static_cast<double>(n - 1) - 0.5;
    i = j + 1;
  }
  return r;
}

torch::Tensor es_gradient(const std::vector<double>& plus, const std::vector<double>& minus,
                          uint64_t seed, int64_t step, int64_t n, double sigma) {
  TORCH_CHECK(plus.size() == minus.size() && !plus.empty() && sigma > 0,
              "es_gradient: need P >= 1 pairs and sigma > 0");
  const int64_t P = static_cast<int64_t>(plus.size());
  std::vector<double> all(plus);
  all.insert(all.end(), minus.begin(), minus.end());
  auto r = centered_ranks(all);
  auto g = torch::zeros({n}, torch::kFloat);
  for (int64_t i = 0; i < P; ++i)
    g.add_(perturbation(seed, step, i, n), static_cast<float>(r[i] - r[P + i]));
  return g.div_(static_cast<float>(2.0 * static_cast<double>(P) * sigma));
}

FlatAdam::FlatAdam(AdamOptions o, int64_t n)
    : m(torch::zeros({n}, torch::kFloat)), v(torch::zeros({n}, torch::kFloat)), opt(o) {}

void FlatAdam::step(torch::Tensor& theta, const torch::Tensor& grad) {
  auto g = grad + theta * static_cast<float>(opt.weight_decay());
  ++t;
  m.mul_(opt.beta1()).add_(g, 1.0 - opt.beta1());
  v.mul_(opt.beta2()).addcmul_(g, g, 1.0 - opt.beta2());
  const double bc1 = 1.0 - std::pow(opt.beta1(), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(opt.beta2(), static_cast<double>(t));
  auto denom = (v / bc2).sqrt_().add_(opt.eps());
  theta.sub_((m / bc1) / denom * opt.lr());
}

std::vector<int64_t> run_order(int64_t count, const std::vector<double>& cost) {
  std::vector<int64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  if (cost.empty()) return order;
  TORCH_CHECK(static_cast<int64_t>(cost.size()) == count, "run_order: ", cost.size(), " costs for ",
              count, " members");
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cost[a] > cost[b]; });
  return order;
}

std::vector<std::vector<double>> evaluate_members(
    int64_t count, int64_t width, int threads, Collective& coll,
    const std::function<std::vector<double>(int64_t)>& eval, const std::vector<double>& cost,
    EvalTiming* timing) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const std::vector<int64_t> order = run_order(count, cost);
  const int64_t round = coll.begin_work();
  std::vector<std::pair<int64_t, std::vector<double>>> done;  // (member, row) run here
  double busy = 0;
  std::exception_ptr error;
  std::mutex mutex;
  auto record = [&] {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error) error = std::current_exception();
  };
  auto worker = [&] {
    at::set_num_threads(1);
    try {
      for (int64_t i = coll.claim(round); i < count; i = coll.claim(round)) {
        const int64_t m = order[i];
        try {
          const auto t0 = Clock::now();
          std::vector<double> row = eval(m);
          const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
          TORCH_CHECK(static_cast<int64_t>(row.size()) == width, "evaluate_members: member gave ",
                      row.size(), " values, expected ", width);
          std::lock_guard<std::mutex> lock(mutex);
          done.emplace_back(m, std::move(row));
          busy += sec;
        } catch (...) {  // this member failed: the others still run
          record();
        }
      }
    } catch (...) {  // a claim failed (the group broke)
      record();
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(count)));
  if (n == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (int k = 0; k < n; ++k) pool.emplace_back(worker);
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
  // Allgather (busy seconds, threads, then rows as (index, values...)).
  std::vector<double> send = {busy, static_cast<double>(n)};
  for (const auto& [m, row] : done) {
    send.push_back(static_cast<double>(m));
    send.insert(send.end(), row.begin(), row.end());
  }
  std::vector<std::vector<double>> all(count);
  double busy_all = 0, workers = 0;
  for (const auto& part : coll.allgather(send)) {
    TORCH_CHECK(part.size() >= 2 && (part.size() - 2) % static_cast<size_t>(width + 1) == 0,
                "evaluate_members: a rank sent ", part.size(), " values");
    busy_all += part[0];
    workers += part[1];
    for (size_t i = 2; i < part.size(); i += width + 1) {
      auto& row = all.at(static_cast<size_t>(part[i]));
      TORCH_CHECK(row.empty(), "evaluate_members: member ", part[i], " ran twice");
      row.assign(part.begin() + i + 1, part.begin() + i + 1 + width);
    }
  }
  for (const auto& row : all)
    TORCH_CHECK(static_cast<int64_t>(row.size()) == width, "evaluate_members: a member is missing");
  if (timing) {
    timing->busy_seconds += busy_all;
    timing->slot_seconds += std::chrono::duration<double>(Clock::now() - start).count() * workers;
  }
  return all;
}

}  // namespace qsched::meta
