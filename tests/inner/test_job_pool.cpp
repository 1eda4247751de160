// The job pool and stop tokens of inner/base (no torch needed).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "inner/base/job_pool.h"
#include "inner/base/stop.h"

namespace qsched {
namespace {

TEST(StopToken, DefaultNeverStopsAndSourcesChainDownwardOnly) {
  StopToken never;
  EXPECT_FALSE(never.stop_requested());
  StopSource parent;
  StopSource child(parent.token());
  StopSource grandchild(child.token());
  EXPECT_FALSE(grandchild.stop_requested());
  child.request_stop();
  EXPECT_TRUE(grandchild.stop_requested());
  EXPECT_TRUE(child.stop_requested());
  EXPECT_FALSE(parent.stop_requested());  // a child's stop does not travel up
  parent.request_stop();
  StopSource late(parent.token());
  EXPECT_TRUE(late.stop_requested());
}

TEST(JobPool, LongestFirstIsAStableSortByCost) {
  EXPECT_EQ(longest_first(4, {}), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(longest_first(5, {1, 3, 3, 0, 5}), (std::vector<int64_t>{4, 1, 2, 0, 3}));
  EXPECT_THROW(longest_first(2, {1.0}), std::invalid_argument);
}

TEST(JobPool, EveryJobRunsExactlyOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<int64_t> order = longest_first(37, {});
    std::mutex m;
    std::multiset<int64_t> seen;
    std::atomic<int> started{0};
    JobPoolOptions o;
    o.threads = threads;
    o.on_worker_start = [&] { ++started; };
    auto r = run_jobs(order, o, [&](int64_t job, const StopToken&) {
      std::lock_guard<std::mutex> lock(m);
      seen.insert(job);
    });
    EXPECT_EQ(r.ran, 37);
    EXPECT_EQ(r.workers, threads);
    EXPECT_EQ(started.load(), threads);
    EXPECT_FALSE(r.stopped);
    ASSERT_EQ(seen.size(), 37u);
    for (int64_t j = 0; j < 37; ++j) EXPECT_EQ(seen.count(j), 1u) << j;
  }
}

TEST(JobPool, JobsAreClaimedInTheGivenOrder) {
  std::vector<int64_t> order = {4, 2, 0, 3, 1};
  std::vector<int64_t> ran;
  run_jobs(order, {}, [&](int64_t job, const StopToken&) { ran.push_back(job); });
  EXPECT_EQ(ran, order);
}

// A shared claimer: two "ranks" (pools with their own threads) split one round between them.
TEST(JobPool, ASharedClaimerSplitsTheWorkBetweenPools) {
  LocalClaimer shared;
  std::mutex m;
  std::multiset<int64_t> seen;
  std::vector<int64_t> order = longest_first(50, {});
  // Both pools must be in the same round: the claimer is opened once and shared, so wrap it.
  struct SameRound : WorkClaimer {
    explicit SameRound(LocalClaimer& c) : c_(c) {}
    int64_t begin_work() override { return 1; }
    int64_t claim(int64_t) override { return c_.claim(1); }
    LocalClaimer& c_;
  } a(shared), b(shared);
  shared.begin_work();
  auto body = [&](int64_t job, const StopToken&) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::lock_guard<std::mutex> lock(m);
    seen.insert(job);
  };
  JobPoolResult ra, rb;
  std::thread ta([&] {
    JobPoolOptions o;
    o.threads = 2;
    o.claimer = &a;
    ra = run_jobs(order, o, body);
  });
  std::thread tb([&] {
    JobPoolOptions o;
    o.claimer = &b;
    rb = run_jobs(order, o, body);
  });
  ta.join();
  tb.join();
  EXPECT_EQ(ra.ran + rb.ran, 50);
  ASSERT_EQ(seen.size(), 50u);
  for (int64_t j = 0; j < 50; ++j) EXPECT_EQ(seen.count(j), 1u) << j;
}

TEST(JobPool, TheFirstFailureStopsTheOthersAndIsRethrown) {
  std::atomic<int> ran{0};
  JobPoolOptions o;
  o.threads = 2;
  auto run = [&] {
    run_jobs(longest_first(100, {}), o, [&](int64_t job, const StopToken& stop) {
      ++ran;
      if (job == 3) throw std::runtime_error("job 3 failed");
      // A long job polls its token, as the trainer does between steps.
      for (int k = 0; k < 2000 && !stop.stop_requested(); ++k)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    });
  };
  try {
    run();
    ADD_FAILURE() << "expected the failure of job 3";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "job 3 failed");
  }
  EXPECT_LT(ran.load(), 100);  // no job was claimed after the failure was seen
}

TEST(JobPool, ARequestedStopEndsClaimingAndIsReported) {
  StopSource src;
  std::atomic<int> ran{0};
  JobPoolOptions o;
  o.threads = 2;
  o.stop = src.token();
  auto r = run_jobs(longest_first(1000, {}), o, [&](int64_t, const StopToken&) {
    if (++ran == 5) src.request_stop();
  });
  EXPECT_TRUE(r.stopped);
  EXPECT_LT(r.ran, 1000);
  EXPECT_GE(r.ran, 5);
}

}  // namespace
}  // namespace qsched
