// End-to-end tests of the qsched binary: exit codes, one-line errors, run directories,
// Ctrl-C and --resume.
#include <gtest/gtest.h>

#include <fstream>

#include "inner/io.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;

namespace {

std::string write_config(const test::TempDir& dir, const json& j) {
  std::string path = dir.file("config.json");
  test::write_file(path, j.dump(2));
  return path;
}

}  // namespace

TEST(Cli, HelpListsEveryCommand) {
  auto r = run_qsched("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"demo", "train", "bench"}) EXPECT_NE(r.output.find(c), std::string::npos);
  for (const char* c : {"demo", "train", "bench"}) {
    auto h = run_qsched(std::string(c) + " --help");
    EXPECT_EQ(h.exit_code, 0) << c;
    EXPECT_NE(h.output.find("usage: qsched"), std::string::npos) << c;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  expect_one_line_error(run_qsched("frobnicate"), "unknown command 'frobnicate'");
  expect_one_line_error(run_qsched("train --bogus 1"), "unrecognised option '--bogus'");
  expect_one_line_error(run_qsched("train --out /tmp/x"), "missing --config");
  expect_one_line_error(run_qsched("train --config /nonexistent.json --out /tmp/x"),
                        "cannot open JSON file '/nonexistent.json'");
  expect_one_line_error(run_qsched("train --epochs abc --config x --out y"), "epochs");
}

TEST(Cli, BadConfigIsOneLineExitTwo) {
  test::TempDir dir;
  json j = test::synthetic_config();
  j["train"]["optimizr"] = json::object();
  expect_one_line_error(
      run_qsched("train --config " + write_config(dir, j) + " --out " + dir.file("run")),
      "unknown key 'train.optimizr'");
  test::write_file(dir.file("broken.json"), "{\"seed\": 1,,}");
  expect_one_line_error(
      run_qsched("train --config " + dir.file("broken.json") + " --out " + dir.file("run")),
      "JSON syntax error");
  j = test::synthetic_config();
  expect_one_line_error(run_qsched("train --config " + write_config(dir, j) + " --out " +
                                   dir.file("run") + " --set train.batch_size=-4"),
                        "train.batch_size = -4");
}

TEST(Cli, MissingDataDirectoryNamesPathAndPackage) {
  test::TempDir dir;
  json j = test::synthetic_config();
  j["data"] = {{"format", "idx"}};
  auto r = run_qsched("train --config " + write_config(dir, j) + " --out " + dir.file("run") +
                      " --data /nonexistent/fmnist");
  expect_one_line_error(r, "/nonexistent/fmnist");
  EXPECT_NE(r.output.find("dataset-fashion-mnist"), std::string::npos) << r.output;
}

TEST(Cli, TrainWritesRunDirectoryAndResumeAfterSigint) {
  test::TempDir dir;
  // A run long enough to be interrupted: many small epochs.
  json j = test::synthetic_config(100);
  std::string cfg = write_config(dir, j);
  auto full = run_qsched("train --quiet --config " + cfg + " --out " + dir.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  EXPECT_NE(full.output.find("test acc"), std::string::npos);

  // SIGINT once the first epoch is checkpointed: checkpoint, exit 130; --resume finishes.
  auto cut =
      test::run_shell(test::qsched_binary() + " train --quiet --config " + cfg + " --out " +
                      dir.file("cut") + " & pid=$!; until [ -f " + dir.file("cut/checkpoint.pt") +
                      " ]; do sleep 0.02; done; kill -INT $pid; wait $pid");
  ASSERT_EQ(cut.exit_code, 130) << cut.output;
  EXPECT_NE(cut.output.find("--resume"), std::string::npos) << cut.output;
  EXPECT_FALSE(file_exists(dir.file("cut/summary.json")));
  auto resumed = run_qsched("train --quiet --resume --out " + dir.file("cut"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;

  auto strip = [](const std::string& text) {
    std::vector<json> rows;
    size_t pos = 0, nl;
    while ((nl = text.find('\n', pos)) != std::string::npos) {
      json r = json::parse(text.substr(pos, nl - pos));
      r.erase("seconds");
      rows.push_back(r);
      pos = nl + 1;
    }
    return rows;
  };
  auto a = strip(test::read_file(dir.file("full/metrics.jsonl")));
  auto b = strip(test::read_file(dir.file("cut/metrics.jsonl")));
  EXPECT_EQ(a.size(), 100u);
  EXPECT_EQ(a, b);
  json sa = read_json_file(dir.file("full/summary.json"));
  json sb = read_json_file(dir.file("cut/summary.json"));
  EXPECT_EQ(sa["test_acc"], sb["test_acc"]);
  EXPECT_EQ(sa["test_loss"], sb["test_loss"]);

  expect_one_line_error(run_qsched("train --config " + cfg + " --out " + dir.file("full")),
                        "already holds a run");
  expect_one_line_error(run_qsched("train --resume --out " + dir.file("nothing")),
                        "does not exist");
}
