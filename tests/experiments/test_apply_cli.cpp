// `qsched apply`: a saved controller schedules a new run; its schedule.json replays without the
// controller; the controller's recurrent state survives Ctrl-C + --resume; mismatched or
// corrupt controllers are one-line errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "inner/base/json_reader.h"
#include "inner/io.h"
#include "meta/apply.h"
#include "meta/controller_io.h"
#include "tests/datasets/data_files.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;

namespace {

const json kBase = {
    {"family", "steps"}, {"portions", {0.25, 0.5, 0.75, 1.0}}, {"epochs_per_step", 1}};

/// An INQ run on the synthetic task with `epochs` epochs (2 float pre-training epochs).
json inq_config(int64_t epochs) {
  json j = test::synthetic_config(epochs);
  j["network"]["hidden"] = {32, 16};
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", 3}, {"pretrain_epochs", 2}, {"schedule", kBase}};
  return j;
}

/// Saves a controller whose parameters are random (seeded): its schedule differs from the base.
std::string save_random_controller(const test::TempDir& dir, const std::string& algorithm,
                                   double scale, const std::string& name = "") {
  meta::Controller c(meta::ControllerOptions().hidden(8).seed(1));
  torch::manual_seed(7);
  c->set_flat_parameters(torch::randn({c->num_parameters()}) * scale);
  std::string path = dir.file(name.empty() ? "ctrl_" + algorithm : name);
  auto q = algorithm == "inq" ? sched::Quantity::kFraction : sched::Quantity::kNoise;
  json base = algorithm == "inq"
                  ? kBase
                  : json{{"family", "ana_window"}, {"sigma0", 0.5}, {"layout", "overlapped"}};
  meta::save_controller(path, c, algorithm, q, base, {{"step", 0}});
  return path;
}

std::string write_config(const test::TempDir& dir, const std::string& name, const json& j) {
  std::string path = dir.file(name);
  test::write_file(path, j.dump(2));
  return path;
}

std::vector<json> metrics(const std::string& run) {
  std::vector<json> rows;
  std::string text = test::read_file(run + "/metrics.jsonl");
  size_t pos = 0, nl;
  while ((nl = text.find('\n', pos)) != std::string::npos) {
    rows.push_back(json::parse(text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return test::strip_time(rows);
}

}  // namespace

TEST(ApplyCli, LearnedScheduleIsRecordedAndReplaysWithoutTheController) {
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.5);
  std::string cfg = write_config(dir, "inq.json", inq_config(6));
  auto r = run_qsched("apply --quiet --controller " + ctrl + " --config " + cfg + " --out " +
                      dir.file("run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json table = read_json_file(dir.file("run/schedule.json"));
  ASSERT_EQ(table["values"].size(), 4u);
  // The random controller moved the schedule away from the base (0.25, 0.5, 0.75 | 1).
  bool differs = false;
  for (int t = 0; t < 3; ++t)
    for (const auto& v : table["values"][t])
      differs |= v.get<double>() != kBase["portions"][t].get<double>();
  EXPECT_TRUE(differs) << table.dump();
  json s = read_json_file(dir.file("run/summary.json"));
  EXPECT_EQ(s["algorithm"], "inq");
  EXPECT_EQ(s["schedule_source"], "controller");
  EXPECT_TRUE(qsched::file_exists(dir.file("run/controller/controller.json")));

  // qsched train --schedule replays it exactly, without the controller.
  auto replay = run_qsched("train --quiet --config " + cfg + " --schedule " +
                           dir.file("run/schedule.json") + " --out " + dir.file("replay"));
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_EQ(metrics(dir.file("run")), metrics(dir.file("replay")));
  json s2 = read_json_file(dir.file("replay/summary.json"));
  EXPECT_EQ(s["test_acc"], s2["test_acc"]);
  EXPECT_EQ(s["test_loss"], s2["test_loss"]);
}

TEST(ApplyCli, AppliesToACnnOnAnotherIdxDatasetGivenWithData) {
  // Controller from MLP-shaped training; target: a VGG-style CNN with another layer count, on an
  // IDX directory (8x8 images) that only --data names.
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.5);
  const std::string data = dir.file("idx");
  test::write_idx_dir(data, /*gz=*/true, 200, 60, 8, 8);
  json j = inq_config(6);
  j["data"] = {{"format", "idx"}, {"root", dir.file("not_here")}, {"val_size", 20}};
  j["network"] = {{"type", "vgg"}, {"blocks", {8, "M", 16, "M"}}, {"fc", {16}}};
  std::string cfg = write_config(dir, "cnn.json", j);
  auto r = run_qsched("apply --quiet --controller " + ctrl + " --config " + cfg + " --data " +
                      data + " --out " + dir.file("run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json summary = read_json_file(dir.file("run/summary.json"));
  EXPECT_TRUE(summary["quantized"].get<bool>());
  EXPECT_TRUE(summary["on_grid"].get<bool>());
  json table = read_json_file(dir.file("run/schedule.json"));
  ASSERT_EQ(table["values"].size(), 4u);     // quantization epochs
  EXPECT_EQ(table["values"][0].size(), 4u);  // conv, conv, fc, out: not the MLP's 3
  for (const auto& v : table["values"][3]) EXPECT_EQ(v.get<double>(), 1.0);
}

TEST(ApplyCli, UntrainedControllerReproducesItsBase) {
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.0);  // theta = 0: head is zero
  std::string cfg = write_config(dir, "inq.json", inq_config(6));
  auto r = run_qsched("apply --quiet --controller " + ctrl + " --config " + cfg + " --out " +
                      dir.file("run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json table = read_json_file(dir.file("run/schedule.json"));
  for (int t = 0; t < 4; ++t)
    for (const auto& v : table["values"][t]) EXPECT_EQ(v.get<double>(), kBase["portions"][t]);
}

TEST(ApplyCli, ResumeAfterSigintContinuesTheSameLearnedSchedule) {
  // A small residual (scale 0.1) keeps the schedule on the config's base (portions 0.25, 0.5,
  // 0.75 for 10 epochs each) instead of saturating at 1 the way the controller's own base
  // (epochs_per_step 1) does after 3 epochs: a resume that lost --base config (it used to fall
  // back to --base meta) changes every later epoch, wherever the interrupt lands.
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.1);
  json j = inq_config(42);
  j["inq"]["schedule"]["epochs_per_step"] = 10;
  std::string cfg = write_config(dir, "inq.json", j);
  auto full = run_qsched("apply --quiet --base config --controller " + ctrl + " --config " + cfg +
                         " --out " + dir.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  json table = read_json_file(dir.file("full/schedule.json"));
  for (int t = 3; t < 29; ++t)
    for (const auto& v : table["values"][t]) ASSERT_LT(v.get<double>(), 1.0) << table.dump();
  // Interrupt once the run is training and has checkpointed a quantization epoch: the first
  // schedule.json is written at the end of quantization epoch 1 (run epoch 3 of 42), after the
  // interrupt handlers are installed; the remaining 39 epochs leave the signal ample time.
  auto cut = test::run_shell(test::qsched_binary() + " apply --quiet --base config --controller " +
                             ctrl + " --config " + cfg + " --out " + dir.file("cut") +
                             " & pid=$!; until [ -f " + dir.file("cut/schedule.json") +
                             " ]; do sleep 0.02; done; kill -INT $pid; wait $pid");
  ASSERT_EQ(cut.exit_code, 130) << cut.output;
  EXPECT_NE(cut.output.find("checkpoint saved"), std::string::npos) << cut.output;
  auto resumed = run_qsched("apply --quiet --resume --out " + dir.file("cut"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(metrics(dir.file("full")), metrics(dir.file("cut")));
  EXPECT_EQ(read_json_file(dir.file("full/schedule.json")),
            read_json_file(dir.file("cut/schedule.json")));
}

TEST(ApplyCli, ResumeUsesTheRecordedBaseAndControllerAndRefusesContradictions) {
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.5);
  std::string other = save_random_controller(dir, "inq", 0.3, "other");
  std::string cfg = write_config(dir, "inq.json", inq_config(6));
  const std::string run = dir.file("run");
  auto r = run_qsched("apply --quiet --base config --controller " + ctrl + " --config " + cfg +
                      " --out " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json rec = read_json_file(run + "/apply.json");
  EXPECT_EQ(rec["base"], "config");
  EXPECT_EQ(rec["controller"], ctrl);
  EXPECT_EQ(rec["fingerprint"].get<std::string>().size(), 16u);
  expect_one_line_error(run_qsched("apply --resume --base meta --out " + run),
                        "--base meta contradicts the run's record: base \"config\"");
  expect_one_line_error(run_qsched("apply --resume --controller " + other + " --out " + run),
                        "is not the controller this run was started with");
  // The same flags as recorded are fine (the run is finished: nothing to train).
  r = run_qsched("apply --quiet --resume --base config --controller " + ctrl + " --out " + run);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A copy replaced behind qsched's back is detected.
  for (const char* f : {"/controller.json", "/controller.pt"})
    test::write_file(run + "/controller" + f, test::read_file(other + f));
  expect_one_line_error(run_qsched("apply --resume --out " + run), "the run directory was altered");
  // Runs of another kind are neither resumed nor overwritten as apply runs.
  auto t = run_qsched("train --quiet --config " + cfg + " --out " + dir.file("train"));
  ASSERT_EQ(t.exit_code, 0) << t.output;
  expect_one_line_error(run_qsched("apply --resume --out " + dir.file("train")),
                        "is a qsched train directory");
  expect_one_line_error(
      run_qsched("apply --controller " + ctrl + " --config " + cfg + " --out " + dir.file("train")),
      "is a qsched train directory");
}

TEST(ApplyCli, BadInputIsOneLineError) {
  test::TempDir dir;
  std::string inq_ctrl = save_random_controller(dir, "inq", 0.1);
  json ana = test::synthetic_config(4);
  ana["algorithm"] = "ana";
  std::string ana_cfg = write_config(dir, "ana.json", ana);
  std::string inq_cfg = write_config(dir, "inq.json", inq_config(6));
  expect_one_line_error(run_qsched("apply --controller " + inq_ctrl + " --config " + ana_cfg +
                                   " --out " + dir.file("a")),
                        "meta-trained for inq");
  expect_one_line_error(run_qsched("apply --config " + inq_cfg + " --out " + dir.file("b")),
                        "missing --controller");
  expect_one_line_error(run_qsched("apply --controller " + dir.file("nothing") + " --config " +
                                   inq_cfg + " --out " + dir.file("c")),
                        "controller");
  expect_one_line_error(run_qsched("apply --controller " + inq_ctrl + " --base nope --config " +
                                   inq_cfg + " --out " + dir.file("e")),
                        "--base");
  // A corrupt controller.pt is rejected, not half-loaded.
  test::write_file(inq_ctrl + "/controller.pt", "not a torch archive");
  expect_one_line_error(run_qsched("apply --controller " + inq_ctrl + " --config " + inq_cfg +
                                   " --out " + dir.file("d")),
                        "controller");
  EXPECT_FALSE(qsched::file_exists(dir.file("d/summary.json")));
}

TEST(ApplyCli, ResumeAtAnEpochBoundaryIsExact) {
  // Deterministic companion of the SIGINT test: the controller's hidden state and the
  // observations it reads (incl. the last step's gradient norm) survive a checkpoint taken
  // between two quantization epochs.
  test::TempDir dir;
  auto saved = meta::load_controller(save_random_controller(dir, "inq", 0.5));
  inner::RunConfig cfg = inner::parse_run_config(inq_config(8));
  auto make = meta::controller_algorithm(saved, "meta", cfg);
  auto data = inner::load_data(cfg, torch::kCPU);
  inner::Trainer straight(cfg, data, make(cfg));
  straight.run(8);
  inner::Trainer first(cfg, data, make(cfg));
  first.run(4);
  first.save_checkpoint(dir.file("c.pt"));
  inner::Trainer second(cfg, data, make(cfg));
  second.load_checkpoint(dir.file("c.pt"));
  second.run(8);
  EXPECT_EQ(test::strip_time(straight.history()), test::strip_time(second.history()));
}

TEST(CompareCli, PairedRunsResultsAndReportResumable) {
  test::TempDir dir;
  std::string ctrl = save_random_controller(dir, "inq", 0.5);
  std::string cfg = write_config(dir, "inq.json", inq_config(6));
  json spec = {
      {"config", cfg},
      {"targets", {{{"name", "mlp"}}}},
      {"schedules",
       {{{"name", "learned"}, {"controller", ctrl}}, {{"name", "base"}, {"schedule", kBase}}}},
      {"reference", "base"},
      {"seeds", 2}};
  std::string path = write_config(dir, "compare.json", spec);
  auto r = run_qsched("compare --quiet --jobs 2 --config " + path + " --out " + dir.file("cmp"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string csv = test::read_file(dir.file("cmp/results.csv"));
  EXPECT_EQ(test::count_lines(csv), 5) << csv;  // header + 2 schedules x 2 seeds
  std::string md = test::read_file(dir.file("cmp/report.md"));
  EXPECT_NE(md.find("| learned |"), std::string::npos) << md;
  EXPECT_NE(md.find("(reference)"), std::string::npos) << md;
  EXPECT_NE(md.find("## learned vs the best hand-coded schedule per target"), std::string::npos)
      << md;
  // The learned runs equal qsched apply with the same seed (same init, data order, schedule).
  auto a = run_qsched("apply --quiet --controller " + ctrl + " --config " + cfg + " --seed 1" +
                      " --out " + dir.file("apply"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(metrics(dir.file("apply")), metrics(dir.file("cmp/runs/mlp/learned/s1")));
  // Rerun: everything is finished, same results.
  auto again = run_qsched("compare --quiet --config " + path + " --out " + dir.file("cmp"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(test::read_file(dir.file("cmp/results.csv")), csv);

  spec["reference"] = "nope";
  expect_one_line_error(run_qsched("compare --config " + write_config(dir, "bad.json", spec) +
                                   " --out " + dir.file("bad")),
                        "reference");
  spec["reference"] = "base";
  spec["seeds"] = 1;
  expect_one_line_error(run_qsched("compare --config " + write_config(dir, "bad2.json", spec) +
                                   " --out " + dir.file("bad")),
                        "seeds");
  // A hand-coded schedule that does not fit a target's layers is found before any run.
  spec["seeds"] = 2;
  spec["schedules"].push_back(
      {{"name", "stag"},
       {"schedule", {{"family", "linear"}, {"layout", "stagger"}, {"delta", 50}}}});
  auto bad = run_qsched("compare --config " + write_config(dir, "bad3.json", spec) + " --out " +
                        dir.file("bad3"));
  expect_one_line_error(bad, "schedule 'stag'");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad3/runs")));
}
