// Controller, features, ControllerSchedule and the standalone controller files.
#include <gtest/gtest.h>

#include "inner/algorithms/registry.h"
#include "inner/inq/inq.h"
#include "meta/controller.h"
#include "meta/controller_io.h"
#include "meta/features.h"
#include "schedules/factory.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched::meta {
namespace {

using sched::Quantity;

json inq_base() {
  return {{"family", "steps"}, {"portions", {0.3, 0.6, 0.8, 1.0}}, {"epochs_per_step", 2}};
}
json ana_base() { return {{"family", "ana_window"}, {"sigma0", 0.5}, {"layout", "sequential"}}; }

/// Asks `s` for every epoch as the ScheduleDriver would, checking the invariants.
std::vector<std::vector<double>> drive(sched::Schedule& s, int64_t T, int64_t L) {
  std::vector<std::vector<double>> out;
  for (int64_t t = 0; t < T; ++t) {
    sched::ScheduleContext ctx;
    ctx.epoch = t;
    ctx.total_epochs = T;
    ctx.num_layers = L;
    for (int64_t l = 0; l < L; ++l) ctx.rel_depth.push_back(L == 1 ? 0.0 : double(l) / (L - 1));
    if (!out.empty()) ctx.previous = out.back();
    ctx.train_loss = 1.0 / (t + 1);
    ctx.val_loss = 1.2 / (t + 1);
    auto v = s.values(ctx);
    EXPECT_EQ(static_cast<int64_t>(v.size()), L);
    sched::check_values(s.quantity(), v, ctx.previous, t + 1 == T, t, "controller");
    out.push_back(v);
  }
  return out;
}

TEST(Controller, UntrainedReproducesBaseExactly) {
  for (auto [spec, q] :
       {std::pair{inq_base(), Quantity::kFraction}, {ana_base(), Quantity::kNoise}}) {
    for (int64_t L : {1, 3, 7}) {
      const int64_t T = 8;
      auto base = sched::make_schedule(spec, q, "base");
      auto expected = sched::materialize(*base, T, L, "base").values;
      ControllerSchedule cs(Controller(ControllerOptions().seed(5)),
                            sched::make_schedule(spec, q, "base"));
      auto got = drive(cs, T, L);
      EXPECT_EQ(got, expected) << spec.dump() << " L=" << L;  // bit-identical doubles
    }
  }
}

TEST(Controller, InvariantsHoldForRandomParametersAndAnyDepth) {
  for (auto [spec, q] :
       {std::pair{inq_base(), Quantity::kFraction}, {ana_base(), Quantity::kNoise}}) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      Controller c(ControllerOptions().hidden(8));
      auto gen = at::detail::createCPUGenerator(seed);
      c->set_flat_parameters(at::normal(0.0, 2.0, {c->num_parameters()}, gen));
      for (int64_t L : {1, 2, 5, 20}) {
        ControllerSchedule cs(c, sched::make_schedule(spec, q, "base"));
        auto v = drive(cs, 9, L);  // drive() checks monotonicity, range and the last epoch
        for (double x : v.back()) EXPECT_EQ(x, q == Quantity::kFraction ? 1.0 : 0.0);
        // Random parameters do change the schedule (the test would not notice a dead head).
        auto base = sched::materialize(*sched::make_schedule(spec, q, "b"), 9, L, "b").values;
        EXPECT_NE(v, base);
      }
    }
  }
}

TEST(Controller, FlatParametersRoundTripAndHeadStartsAtZero) {
  Controller c(ControllerOptions().hidden(4).seed(1));
  const int64_t H = 4, F = kNumFeatures;
  EXPECT_EQ(c->num_parameters(), 3 * H * (F + H) + 3 * H * H + 6 * H + H + 1);
  auto theta = c->flat_parameters();
  EXPECT_GT(theta.slice(0, 0, theta.numel() - H - 1).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(theta.slice(0, theta.numel() - H - 1, theta.numel()).abs().sum().item<double>(), 0.0);
  auto t2 = theta * 2 + 1;
  c->set_flat_parameters(t2);
  EXPECT_TRUE(torch::equal(c->flat_parameters(), t2));
  EXPECT_VALUE_ERROR(c->set_flat_parameters(torch::zeros({3})), "controller parameters");
  // Same seed -> same init; another seed -> another one.
  EXPECT_TRUE(
      torch::equal(Controller(ControllerOptions().hidden(4).seed(1))->flat_parameters(), theta));
  EXPECT_FALSE(
      torch::equal(Controller(ControllerOptions().hidden(4).seed(2))->flat_parameters(), theta));
  EXPECT_VALUE_ERROR(ControllerOptions().hidden(0).validate(), "controller.hidden");
  EXPECT_VALUE_ERROR(ControllerOptions::from_json({{"hiden", 3}}, "controller"), "hidden");
}

TEST(Controller, CombineOutputsFormulas) {
  auto base = torch::tensor({0.2, 0.5}, torch::kDouble);
  auto d = torch::tensor({0.1, -0.9}, torch::kFloat);
  auto f = combine_outputs(Quantity::kFraction, base, {0.4, 0.1}, d, false);
  EXPECT_NEAR(f[0].item<double>(), 0.4, 1e-12);  // max(prev 0.4, 0.3)
  EXPECT_NEAR(f[1].item<double>(), 0.1, 1e-12);  // max(prev 0.1, clamp(-0.4) = 0)
  auto s = combine_outputs(Quantity::kNoise, base, {}, d, false);
  EXPECT_NEAR(s[0].item<double>(), 0.2 * std::exp(double(0.1f)), 1e-9);
  EXPECT_NEAR(s[1].item<double>(), 0.5 * std::exp(double(-0.9f)), 1e-9);
  EXPECT_TRUE(torch::equal(combine_outputs(Quantity::kNoise, base, {}, d, true),
                           torch::zeros({2}, torch::kDouble)));
}

TEST(Features, NormalizedAndChecked) {
  sched::ScheduleContext ctx;
  ctx.epoch = 2;
  ctx.total_epochs = 5;
  ctx.num_layers = 2;
  ctx.rel_depth = {0, 1};
  ctx.previous = {0.25, 0.5};
  ctx.train_loss = 0.5;
  ctx.val_loss = 0.7;
  auto x = make_features(ctx, {0.5, 0.75}, Quantity::kFraction);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{2, kNumFeatures}));
  EXPECT_EQ(static_cast<int64_t>(feature_names().size()), kNumFeatures);
  EXPECT_FLOAT_EQ(x[0][0].item<float>(), 0.5f);   // progress 2/4
  EXPECT_FLOAT_EQ(x[1][1].item<float>(), 1.0f);   // rel_depth
  EXPECT_FLOAT_EQ(x[1][6].item<float>(), 0.75f);  // base
  EXPECT_FLOAT_EQ(x[0][7].item<float>(), 0.25f);  // previous
  EXPECT_FLOAT_EQ(x[0][15].item<float>(), 0.0f);  // no observations
  ctx.observations = {{"layers", json::array({json{{"fan_in", 100},
                                                   {"quant_error", 0.3},
                                                   {"weight_norm", 2.0},
                                                   {"grad_norm", 0.02},
                                                   {"near_threshold", 0.1}},
                                              json::object()})}};
  x = make_features(ctx, {0.5, 0.75}, Quantity::kFraction);
  EXPECT_FLOAT_EQ(x[0][3].item<float>(), 0.5f);                 // log10(100)/4
  EXPECT_FLOAT_EQ(x[0][12].item<float>(), 0.3f);                // quant error
  EXPECT_NEAR(x[0][14].item<float>(), -2.0 / 3.0 + 1.0, 1e-6);  // log10(0.01)/3 + 1
  EXPECT_FLOAT_EQ(x[0][15].item<float>(), 1.0f);
  ctx.observations = {{"layers", json::array({json::object()})}};
  EXPECT_VALUE_ERROR(make_features(ctx, {0.5, 0.75}, Quantity::kFraction), "observations");
  ctx.train_loss = NAN;  // non-finite inputs become 0, never NaN outputs
  ctx.observations = json::object();
  EXPECT_TRUE(
      torch::isfinite(make_features(ctx, {0.5, 0.75}, Quantity::kNoise)).all().item<bool>());
}

/// Records what the trainer passes to a learned schedule.
class Recorder : public sched::Schedule {
 public:
  explicit Recorder(std::vector<json>* seen) : seen_(seen) {}
  Quantity quantity() const override { return Quantity::kFraction; }
  bool is_static() const override { return false; }
  std::vector<double> values(const sched::ScheduleContext& ctx) override {
    seen_->push_back(ctx.observations);
    double f = ctx.epoch + 1 == ctx.total_epochs ? 1.0 : 0.5;
    return std::vector<double>(ctx.num_layers, f);
  }
  json describe() const override { return {{"family", "recorder"}}; }

 private:
  std::vector<json>* seen_;
};

TEST(Observations, InqFillsPerLayerStatistics) {
  json j = test::synthetic_config(4);
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", 3}, {"pretrain_epochs", 1}};
  auto cfg = inner::parse_run_config(j);
  std::vector<json> seen;
  inner::Trainer t(cfg, inner::load_data(cfg, torch::kCPU),
                   inner::make_algorithm(cfg, std::make_unique<Recorder>(&seen)));
  t.run(4);
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& o : seen) {
    ASSERT_EQ(o["layers"].size(), 2u);  // mlp [32]: fc1, out
    for (const auto& l : o["layers"]) {
      EXPECT_GE(l["quant_error"].get<double>(), 0.0);
      EXPECT_LT(l["quant_error"].get<double>(), 1.0);
      EXPECT_GE(l["near_threshold"].get<double>(), 0.0);
      EXPECT_LE(l["near_threshold"].get<double>(), 1.0);
      EXPECT_GT(l["grad_norm"].get<double>(), 0.0);  // after the float epoch
      EXPECT_GT(l["weight_std"].get<double>(), 0.0);
      EXPECT_EQ(l["kind"].get<int>(), 0);
    }
  }
  EXPECT_EQ(seen[0]["layers"][0]["fan_in"].get<int64_t>(), 64);
  // At 50% frozen, the frozen half has zero projection error: the error must drop.
  EXPECT_LT(seen[2]["layers"][0]["quant_error"].get<double>(),
            seen[0]["layers"][0]["quant_error"].get<double>());
  // A schedule of the wrong quantity is rejected.
  EXPECT_VALUE_ERROR(
      inner::make_algorithm(cfg, sched::make_schedule(ana_base(), Quantity::kNoise, "s")),
      "needs a schedule of fraction");
}

TEST(ControllerSchedule, UntrainedControllerRunEqualsBaseRun) {
  for (std::string alg : {"inq", "ana"}) {
    json j = test::synthetic_config(4);
    j["algorithm"] = alg;
    j[alg] = {{"schedule", alg == "inq" ? json{{"family", "steps"},
                                               {"portions", {0.5, 0.8, 1.0}},
                                               {"epochs_per_step", 1}}
                                        : ana_base()}};
    auto base_run = test::make_trainer(j);
    base_run->run(4);
    auto cfg = inner::parse_run_config(j);
    auto q = alg == "inq" ? Quantity::kFraction : Quantity::kNoise;
    inner::Trainer t(
        cfg, inner::load_data(cfg, torch::kCPU),
        inner::make_algorithm(cfg, std::make_unique<ControllerSchedule>(
                                       Controller(ControllerOptions()),
                                       sched::make_schedule(j[alg]["schedule"], q, "base"))));
    t.run(4);
    EXPECT_EQ(test::strip_time(t.history()), test::strip_time(base_run->history())) << alg;
  }
}

TEST(ControllerFiles, RoundTripAndRejections) {
  test::TempDir dir;
  Controller c(ControllerOptions().hidden(6).seed(3));
  auto gen = at::detail::createCPUGenerator(9);
  c->set_flat_parameters(at::normal(0.0, 0.5, {c->num_parameters()}, gen));
  save_controller(dir.path(), c, "inq", Quantity::kFraction, inq_base(), {{"step", 7}});
  auto s = load_controller(dir.file("controller.json"));
  EXPECT_TRUE(torch::equal(s.controller->flat_parameters(), c->flat_parameters()));
  EXPECT_EQ(s.algorithm, "inq");
  ControllerSchedule a(c, sched::make_schedule(inq_base(), Quantity::kFraction, "b"));
  auto sa = s.make_schedule();
  EXPECT_EQ(drive(a, 8, 3), drive(*sa, 8, 3));

  // Another version, another feature spec, a corrupt .pt, a .pt of another controller.
  json spec = json::parse(test::read_file(dir.file("controller.json")));
  auto rewrite = [&](json j) { test::write_file(dir.file("controller.json"), j.dump()); };
  json bad = spec;
  bad["version"] = 99;
  rewrite(bad);
  EXPECT_VALUE_ERROR(load_controller(dir.path()), "version 99");
  bad = spec;
  bad["features"]["version"] = 0;
  rewrite(bad);
  EXPECT_VALUE_ERROR(load_controller(dir.path()), "feature spec");
  bad = spec;
  bad["meta"]["step"] = 8;
  rewrite(bad);
  EXPECT_VALUE_ERROR(load_controller(dir.path()), "does not belong");
  rewrite(spec);
  EXPECT_NO_THROW(load_controller(dir.path()));
  test::write_file(dir.file("controller.pt"), "garbage");
  EXPECT_VALUE_ERROR(load_controller(dir.path()), "corrupt");
  EXPECT_VALUE_ERROR(load_controller(dir.file("nothing")), "nothing");
}

}  // namespace
}  // namespace qsched::meta
