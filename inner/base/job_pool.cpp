#include "inner/base/job_pool.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>

namespace qsched {

int64_t LocalClaimer::begin_work() {
  next_ = 0;
  return ++round_;
}

int64_t LocalClaimer::claim(int64_t) { return next_++; }

std::vector<int64_t> longest_first(int64_t n, const std::vector<double>& cost) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::iota(order.begin(), order.end(), 0);
  if (cost.empty()) return order;
  if (static_cast<int64_t>(cost.size()) != n)
    throw std::invalid_argument("longest_first: " + std::to_string(cost.size()) + " costs for " +
                                std::to_string(n) + " jobs");
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cost[a] > cost[b]; });
  return order;
}

JobPoolResult run_jobs(const std::vector<int64_t>& order, const JobPoolOptions& options,
                       const std::function<void(int64_t job, const StopToken& stop)>& job) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  if (options.threads < 1) throw std::invalid_argument("run_jobs: threads must be >= 1");
  LocalClaimer local;
  WorkClaimer& claimer = options.claimer ? *options.claimer : local;
  const int64_t n = static_cast<int64_t>(order.size());
  const int64_t round = claimer.begin_work();

  StopSource failed(options.stop);  // requested by the first failure
  std::mutex mutex;
  std::exception_ptr error;
  JobPoolResult result;
  auto worker = [&] {
    try {
      if (options.on_worker_start) options.on_worker_start();
      while (!failed.stop_requested()) {
        const int64_t i = claimer.claim(round);
        if (i >= n) break;
        const auto t0 = Clock::now();
        job(order[i], failed.token());
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(mutex);
        ++result.ran;
        result.busy_seconds += sec;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
      failed.request_stop();
    }
  };
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(options.threads, n)));
  result.workers = threads;
  if (threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int k = 0; k < threads; ++k) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  if (error) std::rethrow_exception(error);
  result.stopped = options.stop.stop_requested();
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace qsched
