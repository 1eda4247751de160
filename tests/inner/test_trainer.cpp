#include <gtest/gtest.h>

#include "inner/io.h"
#include "inner/run.h"
#include "inner/runtime.h"
#include "inner/trainer.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;
using test::make_trainer;
using test::strip_time;

namespace {}  // namespace

TEST(Config, DefaultsAreValidAndRoundTrip) {
  RunConfig c = parse_run_config(json::object());
  EXPECT_EQ(c.algorithm, "float");
  EXPECT_EQ(c.data.root, "/usr/share/datasets/fashion-mnist");
  RunConfig again = parse_run_config(c.to_json());
  EXPECT_EQ(again.to_json(), c.to_json());
}

TEST(Config, RejectsUnknownKeysListingValidOnes) {
  EXPECT_VALUE_ERROR(parse_run_config(json{{"epochs", 3}}), "unknown key 'epochs'");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"epoch", 3}}}}),
                     "unknown key 'train.epoch' (valid keys: batch_size");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"optimizer", {{"lr", 0.1}, {"mom", 1}}}}}}),
                     "train.optimizer.mom");
}

TEST(Config, RejectsWrongTypesAndRanges) {
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"epochs", "ten"}}}}),
                     "train.epochs has type string, expected integer");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"epochs", 0}}}}),
                     "train.epochs = 0. Violated constraint: 1 <= epochs <= 100000");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"optimizer", {{"lr", -1.0}}}}}}),
                     "train.optimizer.lr = -1");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"train", {{"optimizer", {{"name", "rmsprop"}}}}}}),
                     "is not one of: sgd, adam");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"algorithm", "fp8"}}), "algorithm");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"device", "tpu"}}), "device");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"data", {{"format", "png"}}}}), "data.format");
  EXPECT_VALUE_ERROR(parse_run_config(json{{"network", 3}}), "network must be an object");
}

TEST(Config, CudaWithoutCudaIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA present";
  EXPECT_VALUE_ERROR(parse_run_config(json{{"device", "cuda"}}), "no CUDA support");
}

TEST(Config, OverridesApplyToNestedKeys) {
  json j = json::object();
  apply_override(j, "train.optimizer.lr=0.01");
  apply_override(j, "network.hidden=[64,32]");
  apply_override(j, "train.optimizer.name=adam");
  EXPECT_DOUBLE_EQ(j["train"]["optimizer"]["lr"].get<double>(), 0.01);
  EXPECT_EQ(j["network"]["hidden"], json({64, 32}));
  EXPECT_EQ(j["train"]["optimizer"]["name"], "adam");
  EXPECT_VALUE_ERROR(apply_override(j, "novalue"), "expected key.path=value");
}

TEST(LrSchedule, StepAndCosineAndWarmup) {
  TrainConfig t;
  t.epochs = 10;
  t.optimizer.lr = 1.0;
  t.lr_schedule.name = "step";
  t.lr_schedule.step_size = 3;
  t.lr_schedule.gamma = 0.5;
  EXPECT_DOUBLE_EQ(lr_at_epoch(t, 0), 1.0);
  EXPECT_DOUBLE_EQ(lr_at_epoch(t, 3), 0.5);
  EXPECT_DOUBLE_EQ(lr_at_epoch(t, 9), 0.125);
  t.lr_schedule.name = "cosine";
  EXPECT_DOUBLE_EQ(lr_at_epoch(t, 0), 1.0);
  EXPECT_NEAR(lr_at_epoch(t, 5), 0.5, 1e-12);
  t.lr_schedule.warmup_epochs = 1;
  EXPECT_NEAR(lr_at_epoch(t, 0), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at_epoch(t, 1), 1.0);
}

TEST(Trainer, LearnsSyntheticTask) {
  auto t = make_trainer(test::synthetic_config(4));
  auto before = t->eval_on(t->data().val);
  EXPECT_EQ(t->run(4), Termination::kCompleted);
  auto after = t->eval_on(t->data().val);
  EXPECT_LT(after.loss, before.loss);
  EXPECT_GT(after.acc, 0.6);  // 4 classes: chance is 0.25
  EXPECT_EQ(t->history().size(), 4u);
}

TEST(Trainer, SameSeedSameMetricsOtherSeedDiffers) {
  auto a = make_trainer(test::synthetic_config(2));
  auto b = make_trainer(test::synthetic_config(2));
  json j = test::synthetic_config(2);
  j["seed"] = 4;
  auto c = make_trainer(j);
  a->run(2);
  b->run(2);
  c->run(2);
  EXPECT_EQ(strip_time(a->history()), strip_time(b->history()));
  EXPECT_NE(strip_time(a->history()), strip_time(c->history()));
}

TEST(Trainer, ResumeAtEpochBoundaryMatchesUninterrupted) {
  test::TempDir dir;
  json j = test::synthetic_config(4);
  j["train"]["optimizer"]["name"] = "adam";
  auto full = make_trainer(j);
  full->run(4);
  auto first = make_trainer(j);
  first->run(2);
  first->save_checkpoint(dir.file("ck.pt"));
  auto second = make_trainer(j);
  second->load_checkpoint(dir.file("ck.pt"));
  EXPECT_EQ(second->epoch(), 2);
  second->run(4);
  EXPECT_EQ(strip_time(second->history()), strip_time(full->history()));
}

TEST(Trainer, InterruptMidEpochThenResumeMatchesUninterrupted) {
  test::TempDir dir;
  json j = test::synthetic_config(3);
  auto full = make_trainer(j);
  full->run(3);
  auto first = make_trainer(j);
  test::StopAt cb(1, 5);
  EXPECT_EQ(first->run(3, &cb, cb.token()), Termination::kInterrupted);
  EXPECT_EQ(first->epoch(), 1);
  first->save_checkpoint(dir.file("ck.pt"));
  auto second = make_trainer(j);
  second->load_checkpoint(dir.file("ck.pt"));
  EXPECT_EQ(second->run(3), Termination::kCompleted);
  EXPECT_EQ(strip_time(second->history()), strip_time(full->history()));
  EXPECT_EQ(second->summary(Termination::kCompleted)["test_acc"],
            full->summary(Termination::kCompleted)["test_acc"]);
}

TEST(Trainer, RejectsCheckpointOfOtherConfigAndCorruptFiles) {
  test::TempDir dir;
  auto a = make_trainer(test::synthetic_config(2));
  a->run(1);
  a->save_checkpoint(dir.file("ck.pt"));
  json other = test::synthetic_config(2);
  other["train"]["optimizer"]["lr"] = 0.01;
  auto b = make_trainer(other);
  EXPECT_VALUE_ERROR(b->load_checkpoint(dir.file("ck.pt")), "different config");
  test::write_file(dir.file("bad.pt"), "this is not a checkpoint");
  EXPECT_VALUE_ERROR(b->load_checkpoint(dir.file("bad.pt")), "corrupt");
  std::string bytes = test::read_file(dir.file("ck.pt"));
  test::write_file(dir.file("trunc.pt"), bytes.substr(0, bytes.size() / 2));
  EXPECT_VALUE_ERROR(b->load_checkpoint(dir.file("trunc.pt")), "corrupt");
  EXPECT_VALUE_ERROR(b->load_checkpoint(dir.file("missing.pt")), "does not exist");
}

TEST(Trainer, DivergenceIsAnOutcomeNotACrash) {
  json j = test::synthetic_config(2);
  j["train"]["optimizer"] = {{"name", "sgd"}, {"lr", 1e30}, {"momentum", 0.0}};
  j["train"]["lr_schedule"] = {{"name", "constant"}};
  auto t = make_trainer(j);
  EXPECT_EQ(t->run(2), Termination::kDiverged);
  EXPECT_EQ(t->summary(Termination::kDiverged)["termination"], "diverged");
}

TEST(RunDir, WritesContractFilesAndRefusesToOverwrite) {
  test::TempDir dir;
  RunConfig cfg = parse_run_config(test::synthetic_config(2));
  RunOptions opt;
  opt.out_dir = dir.file("run");
  opt.quiet = true;
  auto out = run_training(cfg, opt);
  ASSERT_EQ(out.termination, Termination::kCompleted);
  json saved = read_json_file(dir.file("run/config.json"));
  EXPECT_EQ(saved, cfg.to_json());
  std::string metrics = test::read_file(dir.file("run/metrics.jsonl"));
  int lines = 0;
  for (char ch : metrics) lines += ch == '\n';
  EXPECT_EQ(lines, 2);
  json first = json::parse(metrics.substr(0, metrics.find('\n')));
  for (const char* k : {"epoch", "train_loss", "val_loss", "val_acc", "seconds"})
    EXPECT_TRUE(first.contains(k)) << k;
  json s = read_json_file(dir.file("run/summary.json"));
  for (const char* k : {"test_acc", "val_acc", "epochs", "seconds", "algorithm", "quantized"})
    EXPECT_TRUE(s.contains(k)) << k;
  EXPECT_EQ(s["algorithm"], "float");
  EXPECT_EQ(s["quantized"], false);
  EXPECT_TRUE(file_exists(dir.file("run/checkpoint.pt")));
  EXPECT_VALUE_ERROR(run_training(cfg, opt), "already holds a run");
}
