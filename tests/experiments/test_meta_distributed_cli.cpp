// qsched meta-train over several local processes (qsched launch, c10d Gloo on loopback):
// bit-identical controllers for world sizes 1, 2, 3, resume with another world size, a killed
// worker, Ctrl-C, and bad launch variables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "meta/controller_io.h"
#include "meta/distributed.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

const std::string kToken = "meta-cli-test-token-0123";

// Names in `dir`, one per line ("" when empty).
std::string entries(const std::string& dir) {
  std::string s;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    s += e.path().filename().string() + "\n";
  return s;
}

std::string write_meta_config(const TempDir& d, json cfg) {
  cfg["threads"] = 1;
  write_file(d.file("meta.json"), cfg.dump());
  return d.file("meta.json");
}

// A run that goes on until it is stopped (1000 steps, no validation).
std::string write_long_meta_config(const TempDir& d) {
  json cfg = tiny_meta_config();
  cfg["steps"] = 1000;
  cfg["validate_every"] = 0;
  return write_meta_config(d, cfg);
}

// Shell: wait (at most 300 s) until the run in `out` has written its first checkpoint.
std::string wait_for_checkpoint(const std::string& out) {
  return "for i in $(seq 1 3000); do [ -f " + out + "/meta_state.pt ] && break; sleep 0.1; done; ";
}

std::string launch(int nproc, const std::string& meta_args) {
  return nproc == 1
             ? "meta-train --quiet " + meta_args
             : "launch --nproc " + std::to_string(nproc) + " -- meta-train --quiet " + meta_args;
}

// theta of DIR/controller.pt as raw bytes (bit-exact comparison) and the metrics rows without
// wall-clock fields.
struct RunState {
  std::string theta_bytes;
  std::vector<json> rows;
  int64_t step = -1;
};

RunState state_of(const std::string& dir) {
  RunState s;
  auto saved = meta::load_controller(dir);
  auto theta = saved.controller->flat_parameters().contiguous();
  s.theta_bytes.assign(static_cast<const char*>(theta.data_ptr()),
                       theta.numel() * theta.element_size());
  std::istringstream in(read_file(dir + "/meta_metrics.jsonl"));
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  s.rows = strip_time(rows);
  s.step = saved.spec["meta"]["step"].get<int64_t>();
  return s;
}

// Same controller bits and the same metrics (all rows, or the last one: a run stopped early
// validates at its last step, so its earlier rows carry extra validation fields).
void expect_same(const RunState& a, const RunState& b, const std::string& what,
                 bool all_rows = true) {
  EXPECT_EQ(a.step, b.step) << what;
  EXPECT_FALSE(a.theta_bytes.empty()) << what;
  EXPECT_TRUE(a.theta_bytes == b.theta_bytes) << what << ": controllers differ";
  if (all_rows) {
    EXPECT_EQ(a.rows, b.rows) << what;
  } else {
    ASSERT_FALSE(a.rows.empty() || b.rows.empty()) << what;
    EXPECT_EQ(a.rows.size(), b.rows.size()) << what;
    EXPECT_EQ(a.rows.back(), b.rows.back()) << what;
  }
}

TEST(MetaTrainDistributed, ControllerIsBitIdenticalForWorldSizes1To3) {
  TempDir d;
  const std::string cfg = write_meta_config(d, tiny_meta_config());
  RunState ref;
  for (int world : {1, 2, 3}) {
    const std::string out = d.file("w" + std::to_string(world));
    auto r = run_qsched(launch(world, "--config " + cfg + " --out " + out), 600);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2 outer steps"), std::string::npos) << r.output;
    RunState s = state_of(out);
    EXPECT_EQ(s.step, 2);
    EXPECT_EQ(s.rows.size(), 2u);
    if (world == 1)
      ref = s;
    else
      expect_same(s, ref, "world " + std::to_string(world) + " vs 1");
  }
}

TEST(MetaTrainDistributed, ResumeWithAnotherWorldSizeIsExact) {
  TempDir d;
  const std::string cfg = write_meta_config(d, tiny_meta_config());
  auto r = run_qsched(launch(1, "--config " + cfg + " --out " + d.file("straight")), 600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 1 step with 2 ranks, then the last step with 3 ranks.
  r = run_qsched(launch(2, "--config " + cfg + " --out " + d.file("split") + " --steps 1"), 600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_qsched(launch(3, "--resume --out " + d.file("split") + " --steps 2"), 600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same(state_of(d.file("split")), state_of(d.file("straight")), "2+3 ranks vs 1",
              /*all_rows=*/false);
}

TEST(MetaTrainDistributed, KilledWorkerStopsTheRunAndTheCheckpointResumes) {
  TempDir d;
  const std::string cfg = write_long_meta_config(d);
  const std::string out = d.file("run");
  // Wait for the first checkpoint, then kill -9 rank 1 (found through its environment). The
  // grace period is long so that rank 0, even on a loaded machine, notices the loss by itself
  // (at its next collective) before the launcher would SIGTERM it.
  // (TMPDIR is private to the run: nothing may be left there, e.g. a rank's scratch folder)
  const std::string tmp = d.file("tmp");
  std::filesystem::create_directories(tmp);
  auto r = run_shell(
      "TMPDIR=" + tmp + " " + qsched_binary() +
      " launch --nproc 2 --grace 60 -- meta-train --quiet --config " + cfg + " --out " + out +
      " > " + d.file("launch.log") + " 2>&1 & L=$!; " + wait_for_checkpoint(out) +
      "for c in $(pgrep -P $L); do "
      "  tr '\\0' '\\n' < /proc/$c/environ | grep -qx RANK=1 && kill -9 $c; "
      "done; "
      "( sleep 120; kill -9 $L ) >/dev/null 2>&1 & W=$!; wait $L; echo \"launch_exit=$?\"; "
      "kill $W 2>/dev/null");
  std::string log = read_file(d.file("launch.log"));
  EXPECT_NE(r.output.find("launch_exit=137"), std::string::npos) << r.output << log;
  EXPECT_NE(log.find("qsched launch: error: rank 1 of 2 was killed by signal 9"), std::string::npos)
      << log;
  // Rank 0 noticed by itself (closed connection), with one clear line.
  EXPECT_NE(log.find("qsched meta-train: error: distributed allgather failed on rank 0 "
                     "of 2: a peer exited or did not answer"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("; the last checkpoint resumes with --resume"), std::string::npos) << log;
  EXPECT_EQ(log.find("internal error"), std::string::npos) << log;
  // The last checkpoint is intact: resume it with another world size.
  RunState before = state_of(out);
  ASSERT_GE(before.step, 1);
  r = run_shell("TMPDIR=" + tmp + " timeout 600 " + qsched_binary() + " " +
                launch(3, "--resume --out " + out + " --steps " + std::to_string(before.step + 1)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(state_of(out).step, before.step + 1);
  EXPECT_EQ(entries(tmp), "") << "left in TMPDIR";
}

// The launcher names the killed worker even when rank 0 has already exited 3 ("peer lost")
// by the time it looks: the launcher is stopped (SIGSTOP) while rank 1 is killed and rank 0
// exits, so both are waiting to be reaped when it continues, rank 0 (the older child) first.
TEST(MetaTrainDistributed, LauncherNamesTheKilledWorkerWhenRank0ExitedFirst) {
  TempDir d;
  const std::string cfg = write_long_meta_config(d);
  const std::string out = d.file("run");
  const std::string tmp = d.file("tmp");
  std::filesystem::create_directories(tmp);
  auto r = run_shell(
      "TMPDIR=" + tmp + " " + qsched_binary() +
      " launch --nproc 2 --grace 60 -- meta-train --quiet --config " + cfg + " --out " + out +
      " > " + d.file("launch.log") + " 2>&1 & L=$!; " + wait_for_checkpoint(out) +
      "for c in $(pgrep -P $L); do "
      "  r=$(tr '\\0' '\\n' < /proc/$c/environ | sed -n 's/^RANK=//p'); eval C$r=$c; "
      "done; "
      "kill -STOP $L; kill -9 $C1; "
      // rank 0 is a zombie (state Z) once it has exited; at most 120 s
      "for i in $(seq 1 1200); do "
      "  [ \"$(sed 's/.*) //' /proc/$C0/stat | cut -c1)\" = Z ] && echo rank0_exited && break; "
      "  sleep 0.1; "
      "done; "
      "kill -CONT $L; "
      "( sleep 120; kill -9 $L ) >/dev/null 2>&1 & W=$!; wait $L; echo \"launch_exit=$?\"; "
      "kill $W 2>/dev/null");
  std::string log = read_file(d.file("launch.log"));
  EXPECT_NE(r.output.find("rank0_exited"), std::string::npos) << r.output << log;
  EXPECT_NE(r.output.find("launch_exit=137"), std::string::npos) << r.output << log;
  EXPECT_NE(
      log.find("qsched launch: error: rank 1 of 2 was killed by signal 9 (Killed) (first failure)"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find("distributed allgather failed on rank 0 of 2"), std::string::npos) << log;
  EXPECT_EQ(entries(tmp), "") << "left in TMPDIR";
}

// Without the launcher: rank 0's own exit code when its peer is killed is 3 (peer lost).
TEST(MetaTrainDistributed, LostPeerExitsThree) {
  TempDir d;
  const std::string cfg = write_long_meta_config(d);
  const std::string out = d.file("run");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                          std::to_string(meta::free_loopback_port()) +
                          " QSCHED_DIST_TIMEOUT=60 QSCHED_DIST_TOKEN=" + kToken + " ";
  const std::string cmd =
      qsched_binary() + " meta-train --quiet --threads 1 --config " + cfg + " --out " + out;
  auto r =
      run_shell("env RANK=0 " + env + cmd + " > " + d.file("r0.log") + " 2>&1 & A=$!; env RANK=1 " +
                env + cmd + " > " + d.file("r1.log") + " 2>&1 & B=$!; " + wait_for_checkpoint(out) +
                "kill -9 $B; "
                "( sleep 120; kill -9 $A ) >/dev/null 2>&1 & W=$!; wait $A; "
                "echo \"rank0_exit=$?\"; kill $W 2>/dev/null");
  std::string log = read_file(d.file("r0.log"));
  EXPECT_NE(r.output.find("rank0_exit=3"), std::string::npos) << r.output << log;
  EXPECT_NE(log.find("qsched meta-train: error: distributed "), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_GE(state_of(out).step, 1);  // the checkpoint is intact
}

TEST(MetaTrainDistributed, CtrlCStopsEveryRankWithACheckpoint) {
  TempDir d;
  const std::string cfg = write_long_meta_config(d);
  const std::string out = d.file("run");
  auto r = run_shell(qsched_binary() + " launch --nproc 2 -- meta-train --quiet --config " + cfg +
                     " --out " + out + " > " + d.file("launch.log") + " 2>&1 & L=$!; " +
                     wait_for_checkpoint(out) +
                     "kill -INT $L; "
                     "( sleep 120; kill -9 $L ) >/dev/null 2>&1 & W=$!; wait $L; "
                     "echo \"launch_exit=$?\"; kill $W 2>/dev/null");
  std::string log = read_file(d.file("launch.log"));
  EXPECT_NE(r.output.find("launch_exit=130"), std::string::npos) << r.output << log;
  EXPECT_NE(log.find("interrupted: meta-state of step"), std::string::npos) << log;
  EXPECT_EQ(log.find("error"), std::string::npos) << log;
  RunState before = state_of(out);
  r = run_qsched(launch(2, "--resume --out " + out + " --steps " + std::to_string(before.step + 1)),
                 600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(state_of(out).step, before.step + 1);
}

TEST(MetaTrainDistributed, BadLaunchVariablesAreOneLineErrors) {
  TempDir d;
  const std::string cfg = write_meta_config(d, tiny_meta_config());
  const std::string args = " meta-train --config " + cfg + " --out " + d.file("o");
  auto env_run = [&](const std::string& env) {
    return run_shell("env " + env + " timeout 120 " + qsched_binary() + args);
  };
  expect_one_line_error(env_run("WORLD_SIZE=2 RANK=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500"),
                        "RANK=2 with WORLD_SIZE=2");
  expect_one_line_error(env_run("WORLD_SIZE=two RANK=0"), "WORLD_SIZE='two' is not an integer");
  expect_one_line_error(env_run("WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1"),
                        "MASTER_PORT is not set");
  const int port = meta::free_loopback_port();
  const std::string where = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
  expect_one_line_error(env_run("WORLD_SIZE=2 RANK=1 " + where), "QSCHED_DIST_TOKEN is not set");
  expect_one_line_error(env_run("WORLD_SIZE=2 RANK=1 " + where +
                                " QSCHED_DIST_TIMEOUT=1 QSCHED_DIST_TOKEN=" + kToken),
                        "rank 1 cannot reach the master");
  // Ranks with different tokens: the stranger is refused at once, rank 0 names it at its
  // timeout; both exit 2 with one line.
  auto two = run_shell(
      "env RANK=0 WORLD_SIZE=2 " + where + " QSCHED_DIST_TIMEOUT=10 QSCHED_DIST_TOKEN=" + kToken +
      " timeout 120 " + qsched_binary() + args + " > " + d.file("r0.log") +
      " 2>&1 & A=$!; env RANK=1 WORLD_SIZE=2 " + where +
      " QSCHED_DIST_TIMEOUT=10 QSCHED_DIST_TOKEN=other-token-0123456789 timeout 120 " +
      qsched_binary() + args + " > " + d.file("r1.log") +
      " 2>&1; echo rank1_exit=$?; wait $A; echo rank0_exit=$?");
  const std::string r0 = read_file(d.file("r0.log")), r1 = read_file(d.file("r1.log"));
  EXPECT_NE(two.output.find("rank1_exit=2"), std::string::npos) << two.output << r1;
  EXPECT_NE(two.output.find("rank0_exit=2"), std::string::npos) << two.output << r0;
  EXPECT_EQ(count_lines(r1), 1) << r1;
  EXPECT_NE(r1.find("refused this process's QSCHED_DIST_TOKEN"), std::string::npos) << r1;
  EXPECT_EQ(count_lines(r0), 1) << r0;
  EXPECT_NE(r0.find("and refused 1 connection(s) that did not prove QSCHED_DIST_TOKEN"),
            std::string::npos)
      << r0;
  // A bad config on rank 0 stops every rank with rank 0's message and exit code 2.
  auto r = run_qsched(
      "launch --nproc 2 -- meta-train --config " + d.file("missing.json") + " --out " + d.file("o"),
      120);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("[rank 1] qsched meta-train: error: rank 0: "), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("missing.json"), std::string::npos) << r.output;
  // PES keeps its inner runs in one process: several ranks are refused before any run.
  json pes = tiny_meta_config();
  pes["estimator"]["name"] = "pes";
  pes["estimator"]["segment_epochs"] = 1;
  const std::string pes_cfg = d.file("pes.json");
  write_file(pes_cfg, pes.dump());
  r = run_qsched(launch(2, "--config " + pes_cfg + " --out " + d.file("pes")), 120);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("estimator \"pes\" with WORLD_SIZE=2. Violated constraint"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace qsched::test
