// The metagrad estimator of the outer loop (meta/outer_loop.h): the controller gradient of one
// segment equals central finite differences of the meta-objective in double precision, it is
// deterministic, and a meta-training run with estimator "metagrad" runs and resumes exactly.
#include <gtest/gtest.h>

#include <cmath>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/io.h"
#include "inner/runtime.h"
#include "meta/outer_loop.h"
#include "schedules/factory.h"
#include "tests/meta/meta_test_helpers.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched::meta {
namespace {

const json kBase = {
    {"family", "ana_window"}, {"sigma0", 0.5}, {"shape", "linear"}, {"layout", "sequential"}};

json ana_run(int64_t epochs) {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "ana";
  j["ana"] = {{"noise", "normal"}, {"schedule", kBase}};
  return j;
}

/// A trainer scheduled by a controller (double parameters, perturbed away from the zero head),
/// standing at the start of quantization epoch `e`.
struct Segment {
  Controller ctrl{nullptr};
  ControllerSchedule* schedule = nullptr;
  std::unique_ptr<inner::Trainer> trainer;
};

Segment make_segment(int64_t e) {
  Segment s;
  s.ctrl = Controller(ControllerOptions().hidden(4).seed(3));
  auto gen = at::detail::createCPUGenerator(11);
  auto theta = s.ctrl->flat_parameters();
  s.ctrl->set_flat_parameters(theta + 0.3 * torch::randn(theta.sizes(), gen));
  s.ctrl->to(torch::kDouble);
  inner::RunConfig rc = inner::parse_run_config(ana_run(4));
  set_threads(1);
  auto cs = std::make_unique<ControllerSchedule>(
      s.ctrl, sched::make_schedule(kBase, sched::Quantity::kNoise, "base"));
  s.schedule = cs.get();
  s.trainer = std::make_unique<inner::Trainer>(rc, inner::load_data(rc, torch::kCPU),
                                               inner::make_algorithm(rc, std::move(cs)));
  s.trainer->run(e);
  return s;
}

TEST(MetaGradEstimator, ControllerGradientEqualsFiniteDifferencesInDouble) {
  Segment s = make_segment(1);
  MetaGradOptions o;
  o.dtype = torch::kDouble;
  const int64_t K = 3;
  SegmentMetaGrad r = segment_metagrad(*s.trainer, *s.schedule, s.ctrl, K, o);
  // The recomputed sigma is the one the trainer's schedule produced for this epoch.
  auto& driver = dynamic_cast<inner::ana::AnaAlgorithm&>(s.trainer->algorithm()).driver();
  EXPECT_TRUE(torch::allclose(r.sigma, torch::tensor(driver.last(), torch::kDouble), 0, 1e-6));
  ASSERT_EQ(r.grad.numel(), s.ctrl->num_parameters());
  ASSERT_EQ(r.grad.scalar_type(), torch::kDouble);

  // Central differences of J(theta) in the head bias and one GRU input weight.
  auto params = s.ctrl->parameters();  // gru.weight_ih, weight_hh, bias_ih, bias_hh, head.w, head.b
  const int64_t P = s.ctrl->num_parameters();
  const std::vector<int64_t> checked = {P - 1, 5};
  const double h = 1e-6;
  for (int64_t idx : checked) {
    SCOPED_TRACE("parameter " + std::to_string(idx));
    auto J = [&](double delta) {
      torch::NoGradGuard ng;
      int64_t off = 0;
      for (auto& p : params) {
        if (idx < off + p.numel()) {
          p.view({-1})[idx - off] += delta;
          break;
        }
        off += p.numel();
      }
      double v = segment_metagrad(*s.trainer, *s.schedule, s.ctrl, K, o).meta_loss;
      off = 0;
      for (auto& p : params) {
        if (idx < off + p.numel()) {
          p.view({-1})[idx - off] -= delta;
          break;
        }
        off += p.numel();
      }
      return v;
    };
    const double fd = (J(h) - J(-h)) / (2 * h);
    const double ad = r.grad[idx].item<double>();
    EXPECT_GT(std::abs(fd), 1e-7);  // a gradient that can be wrong
    EXPECT_NEAR(ad, fd, 1e-7 + 1e-4 * std::abs(fd));
  }
}

TEST(MetaGradEstimator, SegmentGradientIsDeterministic) {
  Segment a = make_segment(2), b = make_segment(2);
  SegmentMetaGrad ra = segment_metagrad(*a.trainer, *a.schedule, a.ctrl, 4);
  SegmentMetaGrad rb = segment_metagrad(*b.trainer, *b.schedule, b.ctrl, 4);
  EXPECT_EQ(ra.meta_loss, rb.meta_loss);
  EXPECT_TRUE(torch::equal(ra.grad, rb.grad));
  EXPECT_GT(ra.grad.abs().max().item<double>(), 0.0);
  // Asking again (the epoch is recorded now) gives the same result.
  SegmentMetaGrad again = segment_metagrad(*a.trainer, *a.schedule, a.ctrl, 4);
  EXPECT_TRUE(torch::equal(ra.grad, again.grad));
}

TEST(MetaGradEstimator, RejectsEpochsOutsideTheQuantizationPhase) {
  Segment s = make_segment(4);  // the run has ended: epoch 4 of 4
  EXPECT_VALUE_ERROR(segment_metagrad(*s.trainer, *s.schedule, s.ctrl, 2), "quantization epoch");
}

json meta_config() {
  return {
      {"seed", 2},
      {"threads", 2},
      {"steps", 4},
      {"validate_every", 2},
      {"run", ana_run(4)},
      {"tasks",
       {{"networks", {{{"type", "mlp"}, {"hidden", {16}}}, {{"type", "mlp"}, {"hidden", {8, 8}}}}},
        {"seeds", 2}}},
      {"validation", {{"networks", {{{"type", "mlp"}, {"hidden", {12}}}}}, {"seeds", 1}}},
      {"controller", {{"hidden", 4}}},
      {"estimator", {{"name", "metagrad"}, {"pairs", 2}, {"unroll", 3}}},
      {"optimizer", {{"lr", 0.05}}}};
}

TEST(MetaGradEstimator, MetaTrainingRunsAndResumesBitIdentically) {
  test::TempDir a, b;
  LocalCollective coll;
  json j1 = meta_config();
  j1["threads"] = 1;
  MetaTrainer straight(MetaConfig::from_json(j1), a.path(), coll);
  straight.start(false);
  ASSERT_TRUE(straight.run(4));
  run_until_interrupted(meta_config(), b.path(), coll, 1, 4);
  MetaTrainer resumed(MetaConfig::from_json(meta_config()), b.path(), coll);
  resumed.start(true);
  EXPECT_EQ(resumed.steps_done(), 1);
  ASSERT_TRUE(resumed.run(4));
  EXPECT_TRUE(torch::equal(straight.theta(), resumed.theta()));
  EXPECT_FALSE(
      torch::equal(straight.theta(), Controller(straight.config().controller)->flat_parameters()));
  EXPECT_EQ(test::strip_time(straight.history()), test::strip_time(resumed.history()));
  const auto& h = resumed.history();
  ASSERT_EQ(h.size(), 4u);
  for (const auto& row : h) {
    EXPECT_GT(row["grad_norm"].get<double>(), 0.0);
    EXPECT_TRUE(std::isfinite(row["meta_loss"].get<double>()));
    EXPECT_EQ(row["diverged"].get<int64_t>(), 0);
  }
  EXPECT_TRUE(h[1].contains("val_fitness"));
  EXPECT_TRUE(h[3].contains("val_fitness"));
  // The checkpoint is written by rank 0 with the estimator's config (unroll included).
  EXPECT_TRUE(file_exists(b.file("meta_state.pt")));
  EXPECT_TRUE(file_exists(b.file("controller.pt")));
}

TEST(MetaGradEstimator, ConfigRules) {
  json j = meta_config();
  j["estimator"]["unroll"] = 0;
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "unroll");
  j = meta_config();
  EXPECT_EQ(MetaConfig::from_json(j).to_json()["estimator"]["unroll"], 3);
  j["estimator"]["name"] = "es";
  EXPECT_FALSE(MetaConfig::from_json(j).to_json()["estimator"].contains("unroll"));
  j = meta_config();
  j["run"]["algorithm"] = "inq";
  j["run"].erase("ana");
  j["run"]["inq"] = {{"bits", 3}};
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j),
                     "needs an algorithm whose run is differentiable in its schedule");
}

}  // namespace
}  // namespace qsched::meta
