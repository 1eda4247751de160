// The outer loop on tiny synthetic tasks: determinism, exact resume, divergence, bad input.
#include <gtest/gtest.h>

#include <thread>

#include "inner/io.h"
#include "inner/runtime.h"
#include "meta/controller_io.h"
#include "meta/outer_loop.h"
#include "tests/meta/meta_test_helpers.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched::meta {
namespace {

json meta_config() {
  json run = test::synthetic_config(3);
  run["algorithm"] = "inq";
  run["inq"] = {
      {"bits", 3},
      {"pretrain_epochs", 1},
      {"schedule", {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 1}}}};
  return {
      {"seed", 1},
      {"threads", 2},
      {"steps", 6},
      {"validate_every", 3},
      {"run", run},
      {"tasks",
       {{"networks", {{{"type", "mlp"}, {"hidden", {16}}}, {{"type", "mlp"}, {"hidden", {8, 8}}}}},
        {"seeds", 2}}},
      {"validation", {{"networks", {{{"type", "mlp"}, {"hidden", {12}}}}}, {"seeds", 1}}},
      {"controller", {{"hidden", 4}}},
      {"estimator", {{"pairs", 2}, {"sigma", 0.1}}},
      {"optimizer", {{"lr", 0.05}}}};
}

TEST(DataCache, CachedSplitsEqualFreshlyPreparedOnes) {
  json j = test::synthetic_config(3);
  j["data"]["subset"] = 64;
  inner::RunConfig cfg = inner::parse_run_config(j);
  DataCache cache;
  data::Splits a = cache.get(cfg);
  data::Splits fresh = inner::prepare_data(cfg, inner::load_raw_data(cfg), torch::kCPU);
  for (auto [x, y] : {std::pair{&a.train, &fresh.train}, std::pair{&a.val, &fresh.val}}) {
    EXPECT_TRUE(torch::equal(x->images, y->images));
    EXPECT_TRUE(torch::equal(x->labels, y->labels));
  }
  data::Splits again = cache.get(cfg);  // served from the cache: the same storage
  EXPECT_EQ(again.train.images.data_ptr(), a.train.images.data_ptr());
  j["data"]["subset"] = 32;  // another task: another split
  data::Splits other = cache.get(inner::parse_run_config(j));
  EXPECT_EQ(other.train.size(), 32);
  EXPECT_EQ(cache.get(cfg).train.images.data_ptr(), a.train.images.data_ptr());
  const DataCache::RawInfo info = cache.raw_info(cfg);
  EXPECT_EQ(info.input.channels, fresh.train.images.size(1));
  EXPECT_EQ(info.num_classes, fresh.train.num_classes);
  EXPECT_EQ(info.train_samples, inner::load_raw_data(cfg).train.size());
}

// Members fetch their splits from worker threads: every thread asking for one split gets the
// same prepared tensors (prepared once), and different splits come out as prepared alone.
TEST(DataCache, ThreadsShareOnePreparationPerSplit) {
  json j = test::synthetic_config(3);
  DataCache cache;
  std::vector<inner::RunConfig> cfgs;
  for (int64_t subset : {16, 32, 48}) {
    j["data"]["subset"] = subset;
    cfgs.push_back(inner::parse_run_config(j));
  }
  constexpr int kThreads = 6;
  std::vector<data::Splits> got(kThreads);
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back([&, i] { got[i] = cache.get(cfgs[i % 3]); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < kThreads; ++i) {
    data::Splits fresh =
        inner::prepare_data(cfgs[i % 3], inner::load_raw_data(cfgs[i % 3]), torch::kCPU);
    EXPECT_TRUE(torch::equal(got[i].train.images, fresh.train.images)) << i;
    EXPECT_TRUE(torch::equal(got[i].val.labels, fresh.val.labels)) << i;
    EXPECT_EQ(got[i].train.images.data_ptr(), got[(i + 3) % kThreads].train.images.data_ptr())
        << "split " << i % 3 << " prepared twice";
  }
}

TEST(OuterLoop, ResumeAndThreadsGiveBitIdenticalControllers) {
  test::TempDir a, b;
  LocalCollective coll;
  json j1 = meta_config();
  j1["threads"] = 1;
  MetaTrainer straight(MetaConfig::from_json(j1), a.path(), coll);
  straight.start(false);
  ASSERT_TRUE(straight.run(6));
  EXPECT_EQ(straight.steps_done(), 6);

  run_until_interrupted(meta_config(), b.path(), coll, 3, 6);
  MetaTrainer resumed(MetaConfig::from_json(meta_config()), b.path(), coll);
  resumed.start(true);
  EXPECT_EQ(resumed.steps_done(), 3);
  ASSERT_TRUE(resumed.run(6));
  EXPECT_TRUE(torch::equal(straight.theta(), resumed.theta()));
  EXPECT_FALSE(
      torch::equal(straight.theta(),
                   Controller(straight.config().controller)->flat_parameters()));  // it did move
  EXPECT_EQ(test::strip_time(straight.history()), test::strip_time(resumed.history()));
  // Rows: every step; validation on steps 3 and 6.
  const auto& h = resumed.history();
  ASSERT_EQ(h.size(), 6u);
  EXPECT_TRUE(h[2].contains("val_fitness"));
  EXPECT_FALSE(h[3].contains("val_fitness"));
  EXPECT_TRUE(h[5].contains("val_fitness"));
  for (const auto& r : h) {
    EXPECT_GT(r["mean_fitness"].get<double>(), 0.0);
    EXPECT_LE(r["best_fitness"].get<double>(), r["mean_fitness"].get<double>());
    EXPECT_EQ(r["diverged"].get<int64_t>(), 0);
  }
  // The metrics file and the controller files on disk match the state.
  EXPECT_EQ(test::count_lines(test::read_file(b.file("meta_metrics.jsonl"))), 6);
  auto saved = load_controller(b.path());
  EXPECT_TRUE(torch::equal(saved.controller->flat_parameters(), resumed.theta()));
  EXPECT_EQ(saved.spec["meta"]["step"].get<int64_t>(), 6);
  // 8 distinct training tasks at most (2 networks x 2 seeds) + 1 validation task cached.
  EXPECT_LE(resumed.base_cache().size(), 5u);
}

TEST(OuterLoop, PesKeepsInnerRunsAcrossStepsAndResumesExactly) {
  // T = 3 epochs, one epoch per outer step: each particle's runs span steps 1-3 and 4-6; the
  // interruption after step 2 lands in the middle of the inner runs.
  json j = meta_config();
  j["estimator"] = {{"name", "pes"}, {"pairs", 2}, {"sigma", 0.1}, {"segment_epochs", 1}};
  j["validate_every"] = 0;
  test::TempDir a, b;
  LocalCollective coll;
  MetaTrainer straight(MetaConfig::from_json(j), a.path(), coll);
  straight.start(false);
  ASSERT_TRUE(straight.run(5));
  const auto& h = straight.history();
  ASSERT_EQ(h.size(), 5u);
  for (int k : {0, 1, 3, 4}) EXPECT_EQ(h[k]["finished_runs"].get<int64_t>(), 0) << k;
  EXPECT_EQ(h[2]["finished_runs"].get<int64_t>(), 2);  // end of the inner horizon: reset
  run_until_interrupted(j, b.path(), coll, 2, 5);
  EXPECT_TRUE(file_exists(b.file("pes_2_0_0.pt")));
  EXPECT_TRUE(file_exists(b.file("pes_2_1_1.pt")));
  EXPECT_FALSE(file_exists(b.file("pes_1_0_0.pt")));  // superseded checkpoints are removed
  MetaTrainer resumed(MetaConfig::from_json(j), b.path(), coll);
  resumed.start(true);
  EXPECT_EQ(resumed.steps_done(), 2);
  ASSERT_TRUE(resumed.run(5));
  EXPECT_TRUE(torch::equal(straight.theta(), resumed.theta()));
  EXPECT_EQ(test::strip_time(straight.history()), test::strip_time(resumed.history()));
  // A missing inner checkpoint is a clear error.
  std::remove(b.file("pes_5_0_0.pt").c_str());
  MetaTrainer broken(MetaConfig::from_json(j), b.path(), coll);
  EXPECT_VALUE_ERROR(broken.start(true), "pes_5_0_0.pt");
}

TEST(OuterLoop, DivergedRunsScoreWorstAndTheLoopContinues) {
  test::TempDir d;
  LocalCollective coll;
  json j = meta_config();
  j["run"]["train"]["optimizer"]["lr"] = 1e12;
  j["validate_every"] = 0;
  MetaTrainer mt(MetaConfig::from_json(j), d.path(), coll);
  mt.start(false);
  ASSERT_TRUE(mt.run(2));
  for (const auto& r : mt.history()) {
    EXPECT_EQ(r["diverged"].get<int64_t>(), 4);
    EXPECT_TRUE(r["mean_fitness"].is_null());
    EXPECT_EQ(r["diverged_tasks"].size(), 4u);
  }
}

TEST(OuterLoop, BadConfigsAndCheckpoints) {
  json j = meta_config();
  j["stpes"] = 3;
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "stpes");
  j = meta_config();
  j["run"]["algorithm"] = "float";
  j["run"].erase("inq");
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "run.algorithm");
  j = meta_config();
  j["estimator"]["name"] = "metagrad";
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "metagrad");
  j["estimator"]["segment_epochs"] = 0;
  j["estimator"]["name"] = "pes";
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "segment_epochs");
  j["estimator"]["segment_epochs"] = 1;
  j["estimator"]["name"] = "pso";
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "estimator.name");
  j = meta_config();
  j["estimator"]["pairs"] = 0;
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "pairs");
  j = meta_config();
  j["tasks"]["networks"] = json::array();
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "tasks.networks");
  j = meta_config();
  j["run"]["inq"]["schedule"]["portions"] = {0.5, 0.4, 1.0};
  EXPECT_VALUE_ERROR(MetaConfig::from_json(j), "non-decreasing");

  test::TempDir d;
  LocalCollective coll;
  MetaTrainer none(MetaConfig::from_json(meta_config()), d.path(), coll);
  EXPECT_VALUE_ERROR(none.start(true), "does not exist");
  {
    json one = meta_config();
    one["validate_every"] = 0;
    MetaTrainer mt(MetaConfig::from_json(one), d.path(), coll);
    mt.start(false);
    ASSERT_TRUE(mt.run(1));
  }
  MetaTrainer again(MetaConfig::from_json(meta_config()), d.path(), coll);
  EXPECT_VALUE_ERROR(again.start(false), "already holds");
  json other = meta_config();
  other["estimator"]["sigma"] = 0.2;
  MetaTrainer different(MetaConfig::from_json(other), d.path(), coll);
  EXPECT_VALUE_ERROR(different.start(true), "different meta config");
  test::write_file(d.file("meta_state.pt"), "not a checkpoint");
  EXPECT_VALUE_ERROR(again.start(true), "corrupt");

  // A task subset larger than the data: one ValueError before any member runs.
  test::TempDir big_dir;
  json big = meta_config();
  big["tasks"]["subsets"] = {1000000};
  MetaTrainer too_big(MetaConfig::from_json(big), big_dir.path(), coll);
  too_big.start(false);
  EXPECT_VALUE_ERROR(too_big.run(1), "subset <= training samples");
}

// What ranks >= 1 of a resumed distributed run receive instead of the checkpoint archive: the
// state as plain data, complete (the next step is bit-identical) and checked field by field.
TEST(OuterLoop, ExportedStateContinuesExactlyAndMalformedStateIsRejected) {
  json j = meta_config();
  j["validate_every"] = 0;
  test::TempDir a, b;
  LocalCollective coll;
  MetaTrainer source(MetaConfig::from_json(j), a.path(), coll);
  source.start(false);
  ASSERT_TRUE(source.run(2));
  const std::string state = source.export_state();

  MetaTrainer copy(MetaConfig::from_json(j), b.path(), coll);
  copy.import_state(state);
  EXPECT_EQ(copy.steps_done(), 2);
  EXPECT_TRUE(torch::equal(copy.theta(), source.theta()));
  EXPECT_EQ(copy.theta().dtype(), source.theta().dtype());
  EXPECT_EQ(copy.history(), source.history());
  ASSERT_EQ(copy.base_cache().size(), source.base_cache().size());
  for (const auto& [key, v] : source.base_cache()) {
    ASSERT_EQ(copy.base_cache().count(key), 1u) << key;
    EXPECT_EQ(copy.base_cache().at(key), v) << key;
  }
  EXPECT_EQ(copy.export_state(), state);  // Adam moments and step count included
  ASSERT_TRUE(source.run(3));
  ASSERT_TRUE(copy.run(3));
  EXPECT_TRUE(torch::equal(copy.theta(), source.theta()));
  EXPECT_EQ(test::strip_time(copy.history()), test::strip_time(source.history()));

  // Malformed or foreign state: a ValueError naming the problem, the trainer unchanged.
  MetaTrainer fresh(MetaConfig::from_json(j), b.path(), coll);
  const torch::Tensor theta0 = fresh.theta().clone();
  json doc = json::parse(state);
  auto with = [&](const char* field, json v) {
    json d = doc;
    d[field] = std::move(v);
    return d.dump();
  };
  const std::string theta_hex = doc["theta"].get<std::string>();
  EXPECT_VALUE_ERROR(fresh.import_state(state.substr(0, state.size() / 2)), "malformed");
  EXPECT_VALUE_ERROR(fresh.import_state("[1,2]"), "not version");
  EXPECT_VALUE_ERROR(fresh.import_state(with("theta", theta_hex.substr(2))), "'theta' has");
  EXPECT_VALUE_ERROR(fresh.import_state(with("theta", theta_hex + "00")), "'theta' has");
  EXPECT_VALUE_ERROR(
      fresh.import_state(with("adam_m", "zz" + doc["adam_m"].get<std::string>().substr(2))),
      "'adam_m' is not lower-case hex");
  EXPECT_VALUE_ERROR(fresh.import_state(with("step", 3)), "inconsistent");
  EXPECT_VALUE_ERROR(fresh.import_state(with("adam_t", "two")), "malformed");
  json other = doc["config"];
  other["estimator"]["sigma"] = 0.3;
  EXPECT_VALUE_ERROR(fresh.import_state(with("config", other)), "different meta config");
  EXPECT_EQ(fresh.steps_done(), 0);
  EXPECT_TRUE(torch::equal(fresh.theta(), theta0));
}

}  // namespace
}  // namespace qsched::meta
