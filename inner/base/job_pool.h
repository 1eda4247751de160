#pragma once
// The one job pool of qsched: ES members, sweep points and compare runs are all jobs.
//
//   order = {3, 0, 2, 1}                      // which job to hand out first (e.g. longest first)
//   run_jobs(order, {threads, claimer, stop}, [](int64_t job, const StopToken& stop) {...});
//
//        claimer (a counter: this process, or rank 0's store for a group of processes)
//           |  claim() -> 0, 1, 2, ...  each number exactly once, over all workers
//     +-----+-----+
//   thread 1 ... thread T   (of this process; other ranks run their own threads)
//     job(order[i], stop)   until claim() >= order.size(), a stop, or a failure
//
// Dynamic hand-out: whichever worker is free takes the next job, so no core waits while work is
// left. Which worker runs a job must not change its result (jobs derive their randomness from
// their own indices): then results are identical for 1 or N threads and 1 or N processes.
//
// Failure: the first exception a job throws stops the pool: no new job is claimed here, the
// token passed to running jobs reports a stop, the pool waits for them and rethrows that first
// exception. A stop requested through JobPoolOptions::stop (e.g. Ctrl-C) also ends the claiming;
// run_jobs then returns with `stopped` set (running jobs see the stop and end early).
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "inner/base/stop.h"

namespace qsched {

/// Hands out the numbers 0, 1, 2, ... of a round of work, each exactly once over every worker
/// sharing it. Thread-safe.
class WorkClaimer {
 public:
  virtual ~WorkClaimer() = default;
  /// Opens a new round. Every participant (every process of a group) calls it the same number
  /// of times, in the same order; it does not communicate.
  virtual int64_t begin_work() = 0;
  /// The next number of `round`.
  virtual int64_t claim(int64_t round) = 0;
};

/// A claimer for the threads of this process only.
class LocalClaimer : public WorkClaimer {
 public:
  int64_t begin_work() override;
  int64_t claim(int64_t round) override;

 private:
  std::atomic<int64_t> round_{0}, next_{0};
};

struct JobPoolOptions {
  /// Worker threads in this process (>= 1; never more than there are jobs).
  int threads = 1;
  /// Shared counter (nullptr: a LocalClaimer of this call, i.e. this process does every job).
  WorkClaimer* claimer = nullptr;
  /// No new job starts once this reports a stop; running jobs see it through their token.
  StopToken stop;
  /// Runs once at the start of every worker thread (e.g. one intra-op thread per worker).
  std::function<void()> on_worker_start;
};

struct JobPoolResult {
  int64_t ran = 0;          ///< jobs run in this process
  double busy_seconds = 0;  ///< summed wall seconds inside jobs, over this process's workers
  double wall_seconds = 0;  ///< of the whole call
  int workers = 0;          ///< threads used
  bool stopped = false;     ///< JobPoolOptions::stop was requested (jobs may be left undone)
};

/// Runs job(order[i], token) for every i claimed by this process (see the top of this file).
JobPoolResult run_jobs(const std::vector<int64_t>& order, const JobPoolOptions& options,
                       const std::function<void(int64_t job, const StopToken& stop)>& job);

/// 0..n-1 sorted by decreasing `cost` (stable: ties keep index order); `cost` empty: 0..n-1.
std::vector<int64_t> longest_first(int64_t n, const std::vector<double>& cost);

}  // namespace qsched
