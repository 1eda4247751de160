// ES building blocks and the toy task with a known optimal schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "meta/controller.h"
#include "meta/es.h"
#include "schedules/factory.h"

namespace qsched::meta {
namespace {

TEST(Es, CenteredRanks) {
  auto r = centered_ranks({3.0, 1.0, 2.0, INFINITY});
  std::vector<double> want = {1.0 / 6.0, -0.5, -1.0 / 6.0, 0.5};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r[i], want[i], 1e-15);
  r = centered_ranks({1.0, 1.0, NAN, 0.0});  // ties share the mean rank; NaN ranks worst
  EXPECT_EQ(r, (std::vector<double>{0.0, 0.0, 0.5, -0.5}));
  EXPECT_EQ(centered_ranks({4.0}), (std::vector<double>{0.0}));
}

TEST(Es, PerturbationsRegenerateFromIntegers) {
  auto a = perturbation(1, 2, 3, 100), b = perturbation(1, 2, 3, 100);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, perturbation(1, 2, 4, 100)));
  EXPECT_FALSE(torch::equal(a, perturbation(1, 3, 3, 100)));
  auto big = perturbation(0, 0, 0, 100000);
  EXPECT_NEAR(big.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(big.std().item<double>(), 1.0, 0.02);
}

TEST(Es, GradientOfALinearFitnessPointsUphill) {
  // F(theta) = c . theta: the ES estimate must correlate with c (sign-consistent ranks).
  const int64_t n = 20;
  auto c = torch::linspace(-1, 1, n);
  auto theta = torch::zeros({n});
  const double sigma = 0.1;
  std::vector<double> plus, minus;
  const int64_t P = 200;
  for (int64_t i = 0; i < P; ++i) {
    auto e = perturbation(7, 0, i, n);
    plus.push_back((c * (theta + sigma * e)).sum().item<double>());
    minus.push_back((c * (theta - sigma * e)).sum().item<double>());
  }
  auto g = es_gradient(plus, minus, 7, 0, n, sigma);
  double cos = (g * c).sum().item<double>() / (g.norm() * c.norm()).item<double>();
  EXPECT_GT(cos, 0.8);
}

TEST(Es, FlatAdamMatchesTorchAdam) {
  // Golden reference: torch::optim::Adam with L2 weight decay (added to the gradient).
  const int64_t n = 7;
  auto p = torch::linspace(-1, 1, n).requires_grad_(true);
  torch::optim::Adam ref({p}, torch::optim::AdamOptions(0.05).weight_decay(0.01));
  auto theta = torch::linspace(-1, 1, n);
  FlatAdam mine(AdamOptions().lr(0.05).weight_decay(0.01), n);
  for (int k = 0; k < 6; ++k) {
    auto g = torch::sin(torch::arange(n, torch::kFloat) * (k + 1));
    p.mutable_grad() = g.clone();
    ref.step();
    mine.step(theta, g);
    EXPECT_TRUE(torch::allclose(theta, p.detach(), 1e-6, 1e-7)) << k;
  }
}

TEST(Es, RunOrderIsLongestFirstAndStable) {
  EXPECT_EQ(run_order(4, {}), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(run_order(6, {1, 9, 2, 9, 4, 0.5}), (std::vector<int64_t>{1, 3, 4, 2, 0, 5}));
  EXPECT_THROW(run_order(3, {1.0, 2.0}), c10::Error);
}

TEST(Es, EvaluateMembersIsThreadIndependentAndPropagatesErrors) {
  LocalCollective coll;
  auto f = [](int64_t m) { return std::vector<double>{double(m * m), std::sqrt(double(m))}; };
  auto one = evaluate_members(9, 2, 1, coll, f);
  auto two = evaluate_members(9, 2, 2, coll, f);
  EXPECT_EQ(one, two);
  std::vector<double> cost = {5, 1, 4, 2, 8, 3, 3, 0.5, 7};
  EXPECT_EQ(evaluate_members(9, 2, 2, coll, f, cost), one);  // order never changes the rows
  EXPECT_EQ(one[3], (std::vector<double>{9.0, std::sqrt(3.0)}));
  EXPECT_EQ(evaluate_members(0, 2, 2, coll, f).size(), 0u);
  EXPECT_THROW(evaluate_members(4, 1, 2, coll,
                                [](int64_t m) -> std::vector<double> {
                                  TORCH_CHECK_VALUE(m != 2, "member 2 failed");
                                  return {0.0};
                                }),
               c10::ValueError);
  EXPECT_THROW(evaluate_members(3, 2, 2, coll, [](int64_t) { return std::vector<double>{1.0}; }),
               c10::Error);  // wrong width
}

TEST(Es, EvaluateMembersRunsEachMemberOnceLongestFirstAndTimesThem) {
  LocalCollective coll;
  const std::vector<double> cost = {1, 6, 3, 6, 2};
  std::mutex mu;
  std::vector<int64_t> started;
  auto f = [&](int64_t m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      started.push_back(m);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10 * static_cast<int>(cost[m])));
    return std::vector<double>{double(m)};
  };
  EvalTiming timing;
  auto rows = evaluate_members(5, 1, 1, coll, f, cost, &timing);
  EXPECT_EQ(started, (std::vector<int64_t>{1, 3, 2, 4, 0}));  // one thread: exactly run_order
  for (int64_t m = 0; m < 5; ++m) EXPECT_EQ(rows[m], std::vector<double>{double(m)});
  EXPECT_GE(timing.busy_seconds, 0.18);  // 10 ms x 18 of sleeping
  EXPECT_GE(timing.slot_seconds, timing.busy_seconds);
  EXPECT_LE(timing.utilization(), 1.0);
  started.clear();
  EvalTiming two;
  evaluate_members(5, 1, 3, coll, f, cost, &two);
  std::sort(started.begin(), started.end());
  EXPECT_EQ(started, (std::vector<int64_t>{0, 1, 2, 3, 4}));  // three threads: each once
  EXPECT_GE(two.slot_seconds, two.busy_seconds);
  EXPECT_TRUE(std::isnan(EvalTiming().utilization()));
}

// A toy task whose best schedule is known: fitness = mean squared distance between the
// controller's INQ schedule and a target that freezes shallow layers earlier than the base
// (target_l(t) = min(1, base(t) + 0.3 (1 - rel_depth_l)), reachable by the residual). The
// untrained controller (= base) scores ~0.03; ES must bring it close to 0.
TEST(Es, ToyTaskControllerLearnsTheKnownBestSchedule) {
  const json base_spec = {
      {"family", "steps"}, {"portions", {0.1, 0.3, 0.5, 0.7, 0.9, 1.0}}, {"epochs_per_step", 1}};
  const int64_t T = 6;
  const std::vector<int64_t> depths = {2, 4};
  auto fitness = [&](const torch::Tensor& theta) {
    Controller c(ControllerOptions().hidden(8).seed(1));
    c->set_flat_parameters(theta);
    double loss = 0;
    int64_t count = 0;
    for (int64_t L : depths) {
      ControllerSchedule cs(c, sched::make_schedule(base_spec, sched::Quantity::kFraction, "b"));
      auto base = sched::materialize(
                      *sched::make_schedule(base_spec, sched::Quantity::kFraction, "b"), T, L, "b")
                      .values;
      std::vector<double> prev;
      for (int64_t t = 0; t < T; ++t) {
        sched::ScheduleContext ctx;
        ctx.epoch = t;
        ctx.total_epochs = T;
        ctx.num_layers = L;
        for (int64_t l = 0; l < L; ++l) ctx.rel_depth.push_back(double(l) / (L - 1));
        ctx.previous = prev;
        auto v = cs.values(ctx);
        sched::check_values(sched::Quantity::kFraction, v, prev, t + 1 == T, t, "toy");
        for (int64_t l = 0; l < L; ++l) {
          double target = std::min(1.0, base[t][l] + 0.3 * (1.0 - ctx.rel_depth[l]));
          loss += (v[l] - target) * (v[l] - target);
          ++count;
        }
        prev = v;
      }
    }
    return loss / count;
  };
  Controller init(ControllerOptions().hidden(8).seed(1));
  torch::Tensor theta = init->flat_parameters();
  const double f0 = fitness(theta);
  EXPECT_GT(f0, 0.02);
  FlatAdam adam(AdamOptions().lr(0.03).weight_decay(0.0), theta.numel());
  LocalCollective coll;
  const int64_t P = 8;
  const double sigma = 0.05;
  for (int64_t k = 0; k < 150; ++k) {
    std::vector<torch::Tensor> members;
    for (int64_t i = 0; i < P; ++i) {
      auto e = perturbation(11, k, i, theta.numel()) * static_cast<float>(sigma);
      members.push_back(theta + e);
      members.push_back(theta - e);
    }
    auto rows = evaluate_members(
        2 * P, 1, 2, coll, [&](int64_t m) { return std::vector<double>{fitness(members[m])}; });
    std::vector<double> plus, minus;
    for (int64_t i = 0; i < P; ++i) {
      plus.push_back(rows[2 * i][0]);
      minus.push_back(rows[2 * i + 1][0]);
    }
    adam.step(theta, es_gradient(plus, minus, 11, k, theta.numel(), sigma));
  }
  const double f1 = fitness(theta);
  EXPECT_LT(f1, 0.1 * f0) << "initial " << f0 << " final " << f1;
  EXPECT_LT(f1, 0.003);
}

}  // namespace
}  // namespace qsched::meta
