// File safety of the qsched program: corrupt archives (checkpoint.pt, controller.pt,
// meta_state.pt) are one-line errors with exit code 2 and change nothing; output directories and
// files qsched did not make are refused unless --force and are never deleted; a failed write is
// exit code 4 with nothing corrupted; SIGINT during start-up promises no checkpoint; stale
// temporary files of killed runs are removed by the next run.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "inner/io.h"
#include "inner/run_dir.h"
#include "meta/controller_io.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;
namespace fs = std::filesystem;

namespace {

std::string write_json(const test::TempDir& d, const std::string& name, const json& j) {
  test::write_file(d.file(name), j.dump(2));
  return d.file(name);
}

/// A finished float run on the synthetic task in d/<name>.
std::string float_run(const test::TempDir& d, const std::string& name, int64_t epochs = 2) {
  const std::string cfg = write_json(d, name + ".json", test::synthetic_config(epochs));
  auto r = run_qsched("train --quiet --config " + cfg + " --out " + d.file(name));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return d.file(name);
}

/// INQ from the float run's checkpoint `init` (same network as synthetic_config).
json inq_from(const std::string& init, int64_t epochs = 3) {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "inq";
  j["inq"] = {
      {"bits", 3},
      {"init_checkpoint", init},
      {"schedule", {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 1}}}};
  return j;
}

/// Runs a shell script (written to a file) under a timeout; QSCHED names the binary.
test::RunResult run_script(const test::TempDir& d, const std::string& body, int timeout = 120) {
  test::write_file(d.file("script.sh"), "QSCHED=" + test::qsched_binary() + "\n" + body);
  return test::run_shell("timeout " + std::to_string(timeout) + " sh " + d.file("script.sh"));
}

bool has_temporary_files(const std::string& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(FileSafetyCli, CorruptCheckpointIsOneLineErrorAndOverwritesNothing) {
  test::TempDir d;
  const std::string run = float_run(d, "run");
  const std::string summary = test::read_file(run + "/summary.json");
  const std::string good = test::read_file(run + "/checkpoint.pt");
  // Flipped tensor bytes: resuming (which would rewrite summary.json) and using it as the
  // start of an INQ run are both refused, naming the file.
  test::flip_tensor_byte(run + "/checkpoint.pt");
  auto r = run_qsched("train --resume --out " + run);
  expect_one_line_error(r, run + "/checkpoint.pt' is corrupt (CRC-32 mismatch");
  EXPECT_EQ(test::read_file(run + "/summary.json"), summary);
  const std::string inq = write_json(d, "inq.json", inq_from(run + "/checkpoint.pt"));
  expect_one_line_error(run_qsched("train --config " + inq + " --out " + d.file("inq")),
                        "config: inq.init_checkpoint '" + run + "/checkpoint.pt' is corrupt");
  // Truncated, garbage, a bare torch archive of an older qsched.
  test::write_file(run + "/checkpoint.pt", good.substr(0, good.size() / 2));
  expect_one_line_error(run_qsched("train --resume --out " + run), "is corrupt: truncated");
  test::write_file(run + "/checkpoint.pt", "garbage");
  expect_one_line_error(run_qsched("train --resume --out " + run), "not a qsched archive");
  test::write_file(run + "/checkpoint.pt", good.substr(kArchiveHeaderBytes));
  expect_one_line_error(run_qsched("train --resume --out " + run), "older qsched");
  EXPECT_EQ(test::read_file(run + "/summary.json"), summary);
  // The intact file still resumes (a finished run: nothing to train).
  test::write_file(run + "/checkpoint.pt", good);
  EXPECT_EQ(run_qsched("train --quiet --resume --out " + run).exit_code, 0);
}

TEST(FileSafetyCli, CorruptControllerIsOneLineError) {
  test::TempDir d;
  meta::Controller c(meta::ControllerOptions().hidden(8).seed(1));
  const std::string ctrl = d.file("ctrl");
  meta::save_controller(ctrl, c, "inq", sched::Quantity::kFraction,
                        {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 1}},
                        {{"step", 0}});
  json j = test::synthetic_config(3);
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", 3}, {"pretrain_epochs", 1}};
  const std::string cfg = write_json(d, "inq.json", j);
  test::flip_tensor_byte(ctrl + "/controller.pt");
  expect_one_line_error(
      run_qsched("apply --controller " + ctrl + " --config " + cfg + " --out " + d.file("run")),
      "controller file '" + ctrl + "/controller.pt' is corrupt (CRC-32 mismatch");
  EXPECT_FALSE(file_exists(d.file("run")));
}

TEST(FileSafetyCli, CorruptMetaStateIsOneLineError) {
  test::TempDir d;
  json meta = test::tiny_meta_config();
  meta["steps"] = 1;
  meta["validate_every"] = 0;
  const std::string cfg = write_json(d, "meta.json", meta);
  auto r = run_qsched("meta-train --quiet --config " + cfg + " --out " + d.file("m"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string metrics = test::read_file(d.file("m/meta_metrics.jsonl"));
  test::flip_tensor_byte(d.file("m/meta_state.pt"));
  expect_one_line_error(
      run_qsched("meta-train --quiet --resume --out " + d.file("m") + " --steps 2"),
      "meta checkpoint '" + d.file("m") + "/meta_state.pt' is corrupt");
  EXPECT_EQ(test::read_file(d.file("m/meta_metrics.jsonl")), metrics);
}

TEST(FileSafetyCli, TrainRefusesADirectoryItDidNotMakeUnlessForced) {
  test::TempDir d;
  const std::string cfg = write_json(d, "c.json", test::synthetic_config(2));
  const std::string out = d.file("mine");
  test::write_file(out + "/notes.txt", "my notes");
  test::write_file(out + "/config.json", "{\"mine\": true}");
  auto r = run_qsched("train --quiet --config " + cfg + " --out " + out);
  expect_one_line_error(r, "--force");
  EXPECT_EQ(test::read_file(out + "/config.json"), "{\"mine\": true}");
  expect_one_line_error(run_qsched("train --resume --out " + out), "no .qsched-run marker");
  r = run_qsched("train --quiet --force --config " + cfg + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_file(out + "/notes.txt"), "my notes");
  EXPECT_TRUE(is_own_dir(out, "train"));
  // An empty directory is fine; a file in place of the directory is not.
  fs::create_directory(d.file("empty"));
  EXPECT_EQ(run_qsched("train --quiet --config " + cfg + " --out " + d.file("empty")).exit_code, 0);
  test::write_file(d.file("afile"), "x");
  expect_one_line_error(run_qsched("train --config " + cfg + " --out " + d.file("afile")),
                        "not a directory");
  // Another kind of qsched run is not resumed as a train run.
  test::write_file(d.file("meta/.qsched-run"),
                   "{\"format\": \"qsched-run\", \"version\": 1, \"kind\": \"meta-train\"}");
  expect_one_line_error(run_qsched("train --resume --out " + d.file("meta")),
                        "is a qsched meta-train directory");
}

TEST(FileSafetyCli, SweepNeverDeletesFilesItDidNotWrite) {
  test::TempDir d;
  json j = test::synthetic_config(2);
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", 3}, {"pretrain_epochs", 1}, {"schedule", {{"family", "linear"}}}};
  const std::string cfg = write_json(d, "c.json", j);
  const std::string grid =
      write_json(d, "g.json", {{"family", "linear"}, {"grid", {{"end", {-1}}}}});
  const std::string common = "sweep --quiet --no-report --config " + cfg + " --grid " + grid;
  // A foreign --out is refused.
  test::write_file(d.file("foreign/notes.txt"), "mine");
  expect_one_line_error(run_qsched(common + " --out " + d.file("foreign")), "--force");
  auto r = run_qsched(common + " --out " + d.file("s"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // A run directory killed before its first checkpoint (marker, no checkpoint) that also holds
  // a file of someone else: the run starts again next to the file (it used to be removed with
  // the whole directory).
  test::write_file(d.file("s/runs/p0_s1/.qsched-run"),
                   "{\"format\": \"qsched-run\", \"version\": 1, \"kind\": \"train\"}");
  test::write_file(d.file("s/runs/p0_s1/notes.txt"), "mine");
  r = run_qsched(common + " --seeds 2 --out " + d.file("s"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_file(d.file("s/runs/p0_s1/notes.txt")), "mine");
  EXPECT_TRUE(file_exists(d.file("s/runs/p0_s1/summary.json")));
  // A run directory that is not a qsched run stops the sweep before anything runs.
  test::write_file(d.file("s/runs/p0_s2/notes.txt"), "mine");
  expect_one_line_error(run_qsched(common + " --seeds 3 --out " + d.file("s")), "p0_s2");
  EXPECT_EQ(test::read_file(d.file("s/runs/p0_s2/notes.txt")), "mine");
  EXPECT_EQ(test::count_lines(test::read_file(d.file("s/results.csv"))), 3);
}

TEST(FileSafetyCli, DemoNeverDeletesFilesItDidNotWrite) {
  test::TempDir d;
  // Someone else's directory with a "float" subdirectory: refused before anything runs.
  test::write_file(d.file("demo/float/notes.txt"), "mine");
  expect_one_line_error(run_qsched("demo --out " + d.file("demo"), 60), "--force");
  EXPECT_EQ(test::read_file(d.file("demo/float/notes.txt")), "mine");
  // A demo directory whose stage directory holds a foreign file: refused, file kept.
  test::write_file(d.file("demo/.qsched-run"),
                   "{\"format\": \"qsched-run\", \"version\": 1, \"kind\": \"demo\"}");
  // (the demo prints its stage headers on stdout first; the error is one line on stderr)
  auto r = run_qsched("demo --out " + d.file("demo") + " 2>&1 >/dev/null", 60);
  expect_one_line_error(
      r, "output directory '" + d.file("demo/float") + "' exists and was not made by qsched");
  EXPECT_EQ(test::read_file(d.file("demo/float/notes.txt")), "mine");
}

TEST(FileSafetyCli, ExportNeverOverwritesTheRunsOwnFilesOrForeignFiles) {
  test::TempDir d;
  const std::string data = d.file("data");
  json j = inq_from("", 2);
  j["inq"].erase("init_checkpoint");
  const std::string cfg = write_json(d, "inq.json", j);
  auto r = run_qsched("train --quiet --config " + cfg + " --out " + d.file("run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = test::read_file(d.file("run/checkpoint.pt"));
  for (const char* f : {"checkpoint.pt", "config.json", "summary.json"}) {
    r = run_qsched("export --force --run " + d.file("run") + " --out " + d.file("run/") + f);
    expect_one_line_error(r, "is a file of the run directory");
  }
  EXPECT_EQ(test::read_file(d.file("run/checkpoint.pt")), ckpt);
  test::write_file(d.file("notes.txt"), "mine");
  expect_one_line_error(
      run_qsched("export --run " + d.file("run") + " --out " + d.file("notes.txt")), "--force");
  EXPECT_EQ(test::read_file(d.file("notes.txt")), "mine");
  expect_one_line_error(run_qsched("export --run " + d.file("run") + " --out " + d.file("m.qsx") +
                                   " --json " + d.file("notes.txt")),
                        "--force");
  EXPECT_EQ(test::read_file(d.file("notes.txt")), "mine");
  // Its own earlier output is replaced; --force replaces a foreign file the user named.
  ASSERT_EQ(run_qsched("export --run " + d.file("run") + " --out " + d.file("m.qsx")).exit_code, 0);
  ASSERT_EQ(run_qsched("export --run " + d.file("run") + " --out " + d.file("m.qsx")).exit_code, 0);
  ASSERT_EQ(run_qsched("export --force --run " + d.file("run") + " --out " + d.file("notes.txt"))
                .exit_code,
            0);
}

TEST(FileSafetyCli, AFailedWriteIsExitCode4AndCorruptsNothing) {
  // RLIMIT_FSIZE makes write() fail with EFBIG (SIGXFSZ ignored) for root too: config.json and
  // metrics.jsonl fit, the checkpoint does not.
  test::TempDir d;
  json j = test::synthetic_config(2);
  j["network"]["hidden"] = {512};  // checkpoint ~ 0.3 MB
  const std::string cfg = write_json(d, "c.json", j);
  auto r = run_script(d, "trap '' XFSZ\nulimit -f 128\n$QSCHED train --quiet --config " + cfg +
                             " --out " + d.file("run") + "\n");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("qsched train: I/O error: write to '" + d.file("run/checkpoint.pt")),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  EXPECT_EQ(test::count_lines(r.output), 1) << r.output;
  EXPECT_FALSE(file_exists(d.file("run/checkpoint.pt")));
  EXPECT_FALSE(has_temporary_files(d.file("run")));
  EXPECT_NO_THROW(read_json_file(d.file("run/config.json")));
  // The same command with room to write: the directory is qsched's, the run starts again.
  r = run_qsched("train --quiet --config " + cfg + " --out " + d.file("run"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto help = run_qsched("--help");
  EXPECT_NE(help.output.find("4 writing failed"), std::string::npos) << help.output;
}

TEST(FileSafetyCli, SigintDuringStartUpSavesNothingAndSaysSo) {
  // The INQ run reads its init checkpoint from a FIFO: the script knows the run is in start-up
  // once its own open of the FIFO returns, interrupts it there, then lets start-up finish.
  test::TempDir d;
  const std::string flt = float_run(d, "float");
  const std::string fifo = d.file("init.pt");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string cfg = write_json(d, "inq.json", inq_from(fifo));
  auto r = run_script(d, "$QSCHED train --quiet --config " + cfg + " --out " + d.file("run") +
                             " & pid=$!\n"
                             "exec 3>" +
                             fifo +
                             "\n"
                             "kill -INT $pid\n"
                             "cat " +
                             flt +
                             "/checkpoint.pt >&3\n"
                             "exec 3>&-\n"
                             "wait $pid\n");
  EXPECT_EQ(r.exit_code, 130) << r.output;
  EXPECT_NE(r.output.find("interrupted during start-up: nothing was trained; no checkpoint was "
                          "written"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("continue with --resume"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(d.file("run/checkpoint.pt")));
  // Starting again in the same directory works.
  const std::string cfg2 = write_json(d, "inq2.json", inq_from(flt + "/checkpoint.pt"));
  r = run_qsched("train --quiet --config " + cfg2 + " --out " + d.file("run"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(FileSafetyCli, StaleTemporaryFilesOfAKilledRunAreRemovedByTheNextRun) {
  test::TempDir d;
  const std::string run = float_run(d, "run");
  const std::string pid = std::to_string(test::unused_pid());
  for (const char* f : {"checkpoint.pt", "metrics.jsonl", "summary.json"})
    test::write_file(run + "/" + f + ".tmp." + pid, "half written");
  auto r = run_qsched("train --quiet --resume --out " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(has_temporary_files(run));
}
