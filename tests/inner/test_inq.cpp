#include <gtest/gtest.h>

#include <cmath>

#include "inner/algorithms/registry.h"
#include "inner/inq/inq.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/runtime.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;
using inq::Codebook;
using inq::InqAlgorithm;
using test::make_trainer;
using test::strip_time;

namespace {

json inq_config(const json& inq_section, int64_t epochs, const std::string& optimizer = "sgd") {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "inq";
  j["inq"] = inq_section;
  j["train"]["optimizer"]["name"] = optimizer;
  if (optimizer == "adam") j["train"]["optimizer"]["lr"] = 0.01;
  return j;
}

InqAlgorithm& inq_of(Trainer& t) { return dynamic_cast<InqAlgorithm&>(t.algorithm()); }

}  // namespace

TEST(InqCodebook, LevelCountsAndExponentsForAllBitWidths) {
  for (int b = 2; b <= 8; ++b) {
    Codebook cb = Codebook::from_max(1.0, b);  // 4/3 -> n1 = 0
    EXPECT_EQ(cb.n1, 0) << b;
    EXPECT_EQ(cb.n2, 1 - (int64_t{1} << (b - 2))) << b;
    EXPECT_EQ(cb.num_levels(), (int64_t{1} << (b - 1)) + 1) << b;
    EXPECT_EQ(static_cast<int64_t>(cb.magnitudes().size()), (int64_t{1} << (b - 2)) + 1) << b;
  }
  EXPECT_EQ(Codebook::from_max(1.0, 2).n2, 0);  // ternary {0, ±2^n1}
  // The INQ author's example (Caffe issue #6): b = 3, n1 = -1 -> n2 = -2.
  Codebook c3 = Codebook::from_max(0.7, 3);
  EXPECT_EQ(c3.n1, -1);
  EXPECT_EQ(c3.n2, -2);
  // n1 is chosen so that s < 3·2^n1/2 and s >= 3·2^n1/4.
  for (double s : {0.01, 0.3, 0.75, 0.7499, 1.5, 1.49, 7.0}) {
    Codebook cb = Codebook::from_max(s, 5);
    EXPECT_LT(s, 1.5 * std::ldexp(1.0, cb.n1)) << s;
    EXPECT_GE(s, 0.75 * std::ldexp(1.0, cb.n1)) << s;
  }
}

TEST(InqCodebook, RejectsBadBitsAndEmptyLayers) {
  EXPECT_VALUE_ERROR(Codebook::from_max(1.0, 1), "2 <= bits <= 8");
  EXPECT_VALUE_ERROR(Codebook::from_max(1.0, 9), "2 <= bits <= 8");
  EXPECT_VALUE_ERROR(Codebook::from_max(0.0, 4), "max|W| > 0");
}

TEST(InqProjection, MatchesIndependentGoldenValues) {
  json g = read_json_file(std::string(QSCHED_SOURCE_DIR) + "/tests/data/inq_golden.json");
  int checked = 0;
  for (const auto& c : g["cases"]) {
    Codebook cb = Codebook::from_max(c["s"].get<double>(), c["bits"].get<int>());
    ASSERT_EQ(cb.n1, c["n1"].get<int64_t>());
    ASSERT_EQ(cb.n2, c["n2"].get<int64_t>());
    ASSERT_EQ(cb.num_levels(), c["levels"].get<int64_t>());
    auto w = torch::tensor(c["w"].get<std::vector<float>>());
    auto q = inq::project(w, cb);
    auto expected = c["q"].get<std::vector<float>>();
    for (int64_t i = 0; i < w.numel(); ++i) {
      ASSERT_EQ(q[i].item<float>(), expected[i])
          << "bits " << cb.bits << " w " << w[i].item<float>() << " n1 " << cb.n1;
      ++checked;
    }
  }
  EXPECT_GT(checked, 2000);
}

TEST(InqProjection, TiesGoAwayFromZeroAndSmallValuesVanish) {
  Codebook cb = Codebook::from_max(1.0, 3);  // levels 0, 0.5, 1
  auto q = inq::project(torch::tensor({0.75f, -0.75f, 0.25f, 0.2499f, 1.4f, 5.0f}), cb);
  std::vector<float> want = {1.0f, -1.0f, 0.5f, 0.0f, 1.0f, 1.0f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(q[i].item<float>(), want[i]) << i;
  EXPECT_EQ(inq::max_grid_distance(q, cb), 0.0);
}

TEST(InqOptions, BadInputIsRejected) {
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"bits", 1}}), "inq.bits = 1");
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"bits", 9}}), "2 <= bits <= 8");
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"partition", "largest"}}),
                     "is not one of: magnitude, random, random-repartition");
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"bitz", 3}}), "unknown key 'inq.bitz'");
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"exclude", {"middle"}}}), "exclude");
  auto bad_schedule = [](json sched, int64_t epochs) {
    return make_trainer(inq_config({{"schedule", sched}}, epochs));
  };
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "steps"}, {"portions", {0.5, 1.2}}}, 2),
                     "portions[1] = 1.2. Violated constraint: 0 <= every portions[i] <= 1");
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "steps"}, {"portions", {0.5, 0.4, 1.0}}}, 3),
                     "non-decreasing");
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "steps"}, {"portions", {0.5, 0.9}}}, 2),
                     "the last portion is 1");
  // 4 steps of 2 epochs need 7 epochs for the last epoch to be fully quantized.
  EXPECT_VALUE_ERROR(
      bad_schedule({{"family", "inq_paper"}, {"bits", 5}, {"epochs_per_step", 2}}, 6),
      "fraction is 1 at the last epoch");
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "table"},
                                   {"quantity", "fraction"},
                                   {"values", {{0.5, 0.6}, {0.4, 1.0}, {1.0, 1.0}}}},
                                  3),
                     "non-decreasing");
  EXPECT_VALUE_ERROR(
      bad_schedule(
          {{"family", "table"}, {"quantity", "fraction"}, {"values", {{-0.1, 0.6}, {1.0, 1.0}}}},
          2),
      "0 <= fraction <= 1");
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "table"},
                                   {"quantity", "fraction"},
                                   {"values", {{0.5, 0.6, 0.7}, {1.0, 1.0, 1.0}}}},
                                  2),
                     "table has 3 layers");
  EXPECT_VALUE_ERROR(bad_schedule({{"family", "sawtooth"}}, 2), "is not one of");
}

TEST(InqAlgorithm, FreezesExactlyRoundedCountsPerLayer) {
  json table = {{"family", "table"},
                {"quantity", "fraction"},
                {"values", {{0.123, 0.37}, {0.5, 0.371}, {1.0, 1.0}}}};
  auto t = make_trainer(inq_config({{"bits", 4}, {"schedule", table}}, 3));
  for (int64_t e = 0; e < 3; ++e) {
    t->run(e + 1);
    const auto& rows = table["values"][e];
    for (size_t j = 0; j < 2; ++j) {
      const auto& l = inq_of(*t).layers()[j];
      int64_t n = t->network()->layer(l.index)->weight.numel();
      int64_t want = std::llround(rows[j].get<double>() * n);
      EXPECT_EQ(l.frozen, want) << "epoch " << e << " layer " << j;
      EXPECT_EQ(n - l.trainable.sum().item<double>(), want);
    }
  }
}

class InqFrozen : public ::testing::TestWithParam<std::string> {};

TEST_P(InqFrozen, FrozenWeightsAreBitIdenticalAcrossManySteps) {
  // Weight decay, momentum (SGD) or Adam state would move frozen weights if they were not
  // restored after every step.
  json sched = {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 4}};
  json j = inq_config({{"bits", 5}, {"schedule", sched}}, 5, GetParam());
  j["train"]["optimizer"]["weight_decay"] = 0.01;
  auto t = make_trainer(j);
  t->run(1);  // freezes 50% at the start of epoch 0, then 20 steps
  std::vector<torch::Tensor> snap;
  for (const auto& l : inq_of(*t).layers())
    snap.push_back(t->network()->layer(l.index)->weight.detach().clone());
  t->run(4);  // 60 more steps, same fraction
  for (size_t j = 0; j < snap.size(); ++j) {
    const auto& l = inq_of(*t).layers()[j];
    auto w = t->network()->layer(l.index)->weight.detach();
    auto frozen = l.trainable.eq(0);
    ASSERT_GT(frozen.sum().item<int64_t>(), 0);
    EXPECT_TRUE(w.masked_select(frozen).equal(snap[j].masked_select(frozen)));
    EXPECT_TRUE(w.masked_select(frozen).equal(l.frozen_values.masked_select(frozen)));
    // ...while the trainable half did move.
    EXPECT_FALSE(
        w.masked_select(frozen.logical_not()).equal(snap[j].masked_select(frozen.logical_not())));
  }
}
INSTANTIATE_TEST_SUITE_P(Optimizers, InqFrozen, ::testing::Values("sgd", "adam"));

TEST(InqAlgorithm, MagnitudePartitionFreezesLargestFirst) {
  json sched = {{"family", "steps"}, {"portions", {0.3, 1.0}}, {"epochs_per_step", 1}};
  auto t = make_trainer(inq_config({{"schedule", sched}}, 2));
  auto before = t->network()->layer(0)->weight.detach().abs().clone();
  t->algorithm().on_epoch_start(*t, 0);
  const auto& l = inq_of(*t).layers()[0];
  auto frozen = l.trainable.eq(0);
  double min_frozen = before.masked_select(frozen).min().item<double>();
  double max_free = before.masked_select(frozen.logical_not()).max().item<double>();
  EXPECT_GE(min_frozen, max_free);
}

TEST(InqAlgorithm, RandomPartitionIsUniformAndSeeded) {
  // Over 120 seeds, how often each weight of the last layer (32x4 = 128 weights) is among the
  // 25% frozen first: Binomial(120, 0.25), mean 30, sd 4.7; every count within 6 sd, and the
  // frozen set is not the first k weights in memory order.
  json sched = {{"family", "steps"}, {"portions", {0.25, 1.0}}, {"epochs_per_step", 1}};
  torch::Tensor counts;
  for (int seed = 0; seed < 120; ++seed) {
    json j = inq_config({{"partition", "random"}, {"schedule", sched}}, 2);
    j["seed"] = seed;
    j["data"]["synthetic"]["n"] = 300;
    auto t = make_trainer(j);
    t->algorithm().on_epoch_start(*t, 0);
    auto f = inq_of(*t).layers()[1].trainable.eq(0).to(torch::kDouble).view({-1});
    counts = counts.defined() ? counts + f : f;
    if (seed == 0) {
      EXPECT_LT(f.slice(0, 0, 32).sum().item<double>(), 32);
    }
  }
  EXPECT_EQ(counts.sum().item<double>(), 120 * 32);
  EXPECT_GT(counts.min().item<double>(), 30 - 6 * 4.75);
  EXPECT_LT(counts.max().item<double>(), 30 + 6 * 4.75);
  // Chi-square over 128 cells (df 127): mean 127, sd ~16; far tails only.
  double chi2 = ((counts - 30).pow(2) / 30).sum().item<double>() * (1.0 / 0.75);
  EXPECT_LT(chi2, 127 + 6 * 16);
}

TEST(InqAlgorithm, RandomRepartitionReprojectsEveryEpoch) {
  json sched = {{"family", "steps"}, {"portions", {0.5, 0.5, 1.0}}, {"epochs_per_step", 1}};
  auto t = make_trainer(inq_config({{"partition", "random-repartition"}, {"schedule", sched}}, 3));
  t->run(1);
  auto m0 = inq_of(*t).layers()[0].trainable.clone();
  t->run(2);
  auto m1 = inq_of(*t).layers()[0].trainable.clone();
  EXPECT_EQ(inq_of(*t).layers()[0].frozen, m0.numel() / 2);
  EXPECT_FALSE(m0.equal(m1));  // a fresh random subset
  t->run(3);
  auto s = t->summary(Termination::kCompleted);
  EXPECT_TRUE(s["on_grid"].get<bool>());
}

TEST(InqAlgorithm, ResetFlagsReallyAct) {
  json sched = {{"family", "steps"}, {"portions", {0.5, 0.75, 1.0}}, {"epochs_per_step", 2}};
  json j = inq_config({{"schedule", sched}, {"reset_optimizer", true}, {"reset_lr", true}}, 5);
  j["train"]["lr_schedule"] = {{"name", "step"}, {"step_size", 1}, {"gamma", 0.5}};
  auto t = make_trainer(j);
  t->run(2);
  EXPECT_FALSE(t->optimizer().state().empty());
  t->algorithm().on_epoch_start(*t, 2);  // fraction 0.5 -> 0.75
  EXPECT_TRUE(t->optimizer().state().empty());
  EXPECT_EQ(t->lr_epoch_offset(), 2);
  auto u = make_trainer(j);
  u->run(5);
  std::vector<double> lr;
  for (const auto& r : u->history()) lr.push_back(r["lr"].get<double>());
  // LR restarts at each increase (epochs 2 and 4): 0.05, 0.025 | 0.05, 0.025 | 0.05
  EXPECT_DOUBLE_EQ(lr[0], 0.05);
  EXPECT_DOUBLE_EQ(lr[1], 0.025);
  EXPECT_DOUBLE_EQ(lr[2], 0.05);
  EXPECT_DOUBLE_EQ(lr[4], 0.05);
  json k = j;
  k["inq"]["reset_lr"] = false;
  auto v = make_trainer(k);
  v->run(5);
  EXPECT_DOUBLE_EQ(v->history()[2]["lr"].get<double>(), 0.0125);
}

TEST(InqAlgorithm, ExcludedLayersStayFloat) {
  auto t = make_trainer(inq_config({{"exclude", {"last"}}}, 4));
  t->run(4);
  ASSERT_EQ(inq_of(*t).layers().size(), 1u);
  auto s = t->summary(Termination::kCompleted);
  EXPECT_EQ(s["float_layers"], json({"last"}));
  EXPECT_TRUE(s["on_grid"].get<bool>());
  EXPECT_VALUE_ERROR(make_trainer(inq_config({{"exclude", {5}}}, 4)), "has 2 quantizable layers");
}

TEST(InqRun, EndsOnGridRecordsScheduleAndReplaysExactly) {
  test::TempDir dir;
  json sched = {{"family", "steps"}, {"portions", {0.4, 0.7, 1.0}}, {"epochs_per_step", 1}};
  json j = inq_config({{"bits", 3}, {"pretrain_epochs", 2}, {"schedule", sched}}, 5);
  RunConfig cfg = parse_run_config(j);
  RunOptions opt;
  opt.quiet = true;
  opt.out_dir = dir.file("a");
  auto a = run_training(cfg, opt);
  ASSERT_EQ(a.termination, Termination::kCompleted);
  EXPECT_EQ(a.summary["algorithm"], "inq");
  EXPECT_EQ(a.summary["bits"], 3);
  EXPECT_TRUE(a.summary["quantized"].get<bool>());
  EXPECT_TRUE(a.summary["on_grid"].get<bool>());
  EXPECT_EQ(a.summary["max_grid_distance"].get<double>(), 0.0);
  json rec = read_json_file(dir.file("a/schedule.json"));
  EXPECT_EQ(rec["values"], json({{0.4, 0.4}, {0.7, 0.7}, {1.0, 1.0}}));

  json r = j;
  r["inq"]["schedule"] = {{"family", "file"}, {"path", dir.file("a/schedule.json")}};
  opt.out_dir = dir.file("b");
  auto b = run_training(parse_run_config(r), opt);
  EXPECT_EQ(a.summary["test_acc"], b.summary["test_acc"]);
  EXPECT_EQ(a.summary["test_loss"], b.summary["test_loss"]);
}

TEST(InqRun, InterruptedInqRunResumesExactly) {
  test::TempDir dir;
  json sched = {{"family", "steps"}, {"portions", {0.5, 0.8, 1.0}}, {"epochs_per_step", 1}};
  json j = inq_config({{"partition", "random"}, {"pretrain_epochs", 1}, {"schedule", sched}}, 4);
  auto full = make_trainer(j);
  full->run(4);
  test::StopAt stop(2, 7);
  auto first = make_trainer(j);
  EXPECT_EQ(first->run(4, &stop, stop.token()), Termination::kInterrupted);
  first->save_checkpoint(dir.file("ck.pt"));
  auto second = make_trainer(j);
  second->load_checkpoint(dir.file("ck.pt"));
  EXPECT_EQ(second->run(4), Termination::kCompleted);
  EXPECT_EQ(strip_time(second->history()), strip_time(full->history()));
  EXPECT_EQ(second->summary(Termination::kCompleted)["test_loss"],
            full->summary(Termination::kCompleted)["test_loss"]);
}

TEST(InqRun, StartsFromAFloatCheckpoint) {
  test::TempDir dir;
  RunOptions opt;
  opt.quiet = true;
  opt.out_dir = dir.file("float");
  run_training(parse_run_config(test::synthetic_config(3)), opt);
  json j = inq_config({{"init_checkpoint", dir.file("float/checkpoint.pt")}}, 4);
  auto t = make_trainer(j);
  auto float_net = make_trainer(test::synthetic_config(3));
  float_net->load_checkpoint(dir.file("float/checkpoint.pt"));
  EXPECT_TRUE(t->network()->layer(0)->weight.equal(float_net->network()->layer(0)->weight));
  json bad = inq_config({{"init_checkpoint", dir.file("nope.pt")}}, 4);
  EXPECT_VALUE_ERROR(make_trainer(bad), "does not exist");
}

TEST(InqAlgorithm, MinErrorCodebookNeverProjectsWorseThanThePaperRule) {
  for (int bits : {2, 3, 5}) {
    json sched = {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 1}};
    auto paper = make_trainer(inq_config({{"bits", bits}, {"schedule", sched}}, 2));
    auto minerr = make_trainer(
        inq_config({{"bits", bits}, {"codebook", "min-error"}, {"schedule", sched}}, 2));
    paper->algorithm().on_epoch_start(*paper, 0);
    minerr->algorithm().on_epoch_start(*minerr, 0);
    for (size_t j = 0; j < 2; ++j) {
      const auto& lp = inq_of(*paper).layers()[j];
      const auto& lm = inq_of(*minerr).layers()[j];
      EXPECT_LE(lm.codebook.n1, lp.codebook.n1);
      EXPECT_GE(lm.codebook.n1, lp.codebook.n1 - 4);
      // Same initial weights (same seed): compare the projection error of the whole layer.
      auto w = make_trainer(test::synthetic_config(2))->network()->layer(lp.index)->weight.detach();
      double ep = (w - inq::project(w, lp.codebook)).pow(2).sum().item<double>();
      double em = (w - inq::project(w, lm.codebook)).pow(2).sum().item<double>();
      EXPECT_LE(em, ep) << "bits " << bits << " layer " << j;
    }
  }
  EXPECT_VALUE_ERROR(inq::InqOptions::from_json({{"codebook", "best"}}), "inq.codebook");
}
