// `qsched train` with ANA configs: bad input is one line and exit code 2; a run writes
// schedule.json and a {"family": "file"} schedule (what --schedule FILE sets) replays it.
#include <gtest/gtest.h>

#include "inner/io.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;

namespace {

json ana_config(const json& ana, int64_t epochs = 3) {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "ana";
  j["ana"] = ana;
  return j;
}

test::RunResult train(const test::TempDir& dir, const json& j, const std::string& extra = "") {
  std::string path = dir.file("config.json");
  test::write_file(path, j.dump(2));
  return run_qsched("train --config " + path + " --out " + dir.file("run") + " " + extra);
}

}  // namespace

TEST(AnaCli, BadInputIsOneLineExitTwo) {
  test::TempDir dir;
  expect_one_line_error(train(dir, ana_config({{"noise", "gaussian"}})),
                        "ana.noise = \"gaussian\" is not one of: uniform, triangular, normal, "
                        "logistic");
  expect_one_line_error(train(dir, ana_config({{"strategy", "median"}})),
                        "ana.strategy = \"median\" is not one of: expectation, mode, random");
  expect_one_line_error(train(dir, ana_config({{"backward", {{"floor", -0.5}}}})),
                        "ana.backward.floor = -0.5");
  expect_one_line_error(
      train(dir, ana_config({{"schedule", {{"family", "ana_window"}, {"sigma0", -1}}}})),
      "ana.schedule.sigma0 = -1. Violated constraint: sigma0 >= 0");
  expect_one_line_error(train(dir, ana_config({{"schedule",
                                                {{"family", "table"},
                                                 {"quantity", "noise"},
                                                 {"values", {{0.1, 0.1}, {0.2, 0.1}, {0, 0}}}}}})),
                        "noise levels are non-increasing");
  expect_one_line_error(
      train(dir, ana_config({{"schedule",
                              {{"family", "table"},
                               {"quantity", "noise"},
                               {"values", {{0.1, 0.1}, {0.1, 0.1}, {0.1, 0}}}}}})),
      "noise is 0 at the last epoch");
  expect_one_line_error(
      train(dir, ana_config({{"schedule", {{"family", "ana_window"}, {"window", 5}}}})),
      "noise reaches 0 by the last epoch");
  expect_one_line_error(train(dir, ana_config({{"weights", {{"levels", {-1, 1, 0.5}}}}})),
                        "levels are strictly increasing");
  expect_one_line_error(train(dir, ana_config({{"activations", {{"levels", {0, 0}}}}})),
                        "ana.activations.levels[1] = 0 <= 0");
  expect_one_line_error(train(dir, ana_config({{"noize", "uniform"}})), "unknown key 'ana.noize'");
  // Nothing was started: the output directory holds no run.
  EXPECT_FALSE(file_exists(dir.file("run/checkpoint.pt")));
}

TEST(AnaCli, TrainWritesScheduleAndReplaysIt) {
  test::TempDir dir;
  json j = ana_config({{"schedule", {{"family", "ana_window"}, {"shape", "cosine"}}}}, 3);
  auto r = train(dir, j);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json s = json::parse(test::read_file(dir.file("run/summary.json")));
  EXPECT_EQ(s["algorithm"], "ana");
  EXPECT_EQ(s["quantized"], true);
  EXPECT_EQ(s["on_grid"], true);
  std::string sched = dir.file("run/schedule.json");
  ASSERT_TRUE(file_exists(sched));
  // A table that increases is rejected when replayed, too.
  test::TempDir other;
  test::write_file(other.file("bad.json"),
                   R"({"quantity": "noise", "values": [[0.1, 0.1], [0.3, 0.1], [0, 0]]})");
  std::string cfg = dir.file("config.json");
  // Replay through the config key that `--schedule FILE` sets (run_flags.cpp).
  auto from_file = [](const std::string& path) {
    return " --set 'ana.schedule={\"family\": \"file\", \"path\": \"" + path + "\"}'";
  };
  expect_one_line_error(run_qsched("train --config " + cfg + " --out " + other.file("run") +
                                   from_file(other.file("bad.json"))),
                        "noise levels are non-increasing");
  auto replay =
      run_qsched("train --config " + cfg + " --out " + other.file("replay") + from_file(sched));
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_EQ(test::read_file(other.file("replay/schedule.json")), test::read_file(sched));
  json s2 = json::parse(test::read_file(other.file("replay/summary.json")));
  EXPECT_EQ(s2["test_acc"], s["test_acc"]);
}
