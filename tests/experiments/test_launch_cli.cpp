// `qsched launch`: flags, per-worker environment, output prefixes, failure handling and
// signal forwarding. Workers run commands that ignore the launch variables (`train --help`,
// a failing `train`, a long `bench`), so these tests do not depend on meta-train.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "experiments/launch.h"
#include "tests/util/test_util.h"

using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;
using qsched::test::run_shell;

namespace {

// Shell snippet: waits (at most ~60 s) until launcher $L has `n` children, then sets C0/C1 to
// the pids of the workers with RANK=0 / RANK=1 (read from /proc/PID/environ).
std::string find_workers(int n) {
  return "for i in $(seq 1 600); do [ \"$(pgrep -P $L | wc -l)\" -ge " + std::to_string(n) +
         " ] && break; sleep 0.1; done; "
         "for c in $(pgrep -P $L); do "
         "  r=$(tr '\\0' '\\n' < /proc/$c/environ | sed -n 's/^RANK=//p'); "
         "  eval C$r=$c; "
         "done; ";
}

// Waits for launcher $L (at most 90 s, then kills it) and prints its exit code.
const char* kWaitLauncher =
    "( sleep 90; kill -9 $L ) >/dev/null 2>&1 & W=$!; wait $L; echo \"launch_exit=$?\"; "
    "kill $W 2>/dev/null; ";

}  // namespace

TEST(Launch, BadFlagsAreOneLineErrors) {
  expect_one_line_error(run_qsched("launch --nproc 2"), "needs '--' before the worker command");
  expect_one_line_error(run_qsched("launch --nproc 2 --"), "no worker command after '--'");
  expect_one_line_error(run_qsched("launch -- bench"), "'--nproc' is required");
  expect_one_line_error(run_qsched("launch --nproc 0 -- bench"), "1 <= --nproc <= 256");
  expect_one_line_error(run_qsched("launch --nproc x -- bench"), "nproc");
  expect_one_line_error(run_qsched("launch --nproc 2 --master-port 70000 -- bench"),
                        "0 <= --master-port <= 65535");
  expect_one_line_error(run_qsched("launch --nproc 2 --grace -1 -- bench"), "--grace");
  expect_one_line_error(run_qsched("launch --nproc 2 -- launch --nproc 2 -- bench"),
                        "the worker command cannot be launch");
  auto r = run_shell("QSCHED_DIST_TOKEN=short " + qsched::test::qsched_binary() +
                     " launch --nproc 2 -- bench");
  expect_one_line_error(r, "QSCHED_DIST_TOKEN has 5 characters. Violated constraint: 16 <= length");
  EXPECT_EQ(r.output.find("short"), std::string::npos) << r.output;
}

// Which worker the launcher names (experiments/launch.h), on the orders of reaping that a
// loaded machine produces.
TEST(LaunchAttribution, SignalDeathBeforeExitCodesBeforePeerLost) {
  using qsched::cli::first_failure;
  using qsched::cli::WorkerEnd;
  const int exit3 = W_EXITCODE(3, 0), exit2 = W_EXITCODE(2, 0), ok = W_EXITCODE(0, 0);
  const int exit130 = W_EXITCODE(130, 0);
  // kill -9 of rank 1; rank 0 noticed and exited 3 before the launcher reaped rank 1.
  EXPECT_EQ(first_failure({{0, exit3, 0, false}, {1, SIGKILL, 1, false}}), 1);
  EXPECT_EQ(first_failure({{0, SIGKILL, 1, false}, {1, exit3, 0, false}}), 0);
  // A rank that refused bad input (2) is the cause of the others' lost peer (3).
  EXPECT_EQ(first_failure({{0, exit3, 0, false}, {1, exit3, 1, false}, {2, exit2, 2, false}}), 2);
  // Same class: the one reaped first.
  EXPECT_EQ(first_failure({{0, exit2, 1, false}, {1, exit2, 0, false}}), 1);
  EXPECT_EQ(first_failure({{0, SIGSEGV, 2, false}, {1, SIGKILL, 1, false}, {2, exit3, 0, false}}),
            1);
  // Ended by the launcher's own SIGTERM/SIGKILL (after the grace period) or 130 after it: a
  // consequence, even when it is the only signal death.
  EXPECT_EQ(first_failure({{0, SIGTERM, 1, true}, {1, exit3, 0, false}}), 1);
  EXPECT_EQ(first_failure({{0, SIGKILL, 2, true}, {1, exit130, 0, true}, {2, exit2, 1, false}}), 2);
  // A crash after the launcher's SIGTERM is still a crash.
  EXPECT_EQ(first_failure({{0, SIGSEGV, 1, true}, {1, exit3, 0, false}}), 0);
  // Nothing failed on its own.
  EXPECT_EQ(first_failure({{0, ok, 0, false}, {1, ok, 1, false}}), -1);
  EXPECT_EQ(first_failure({{0, exit130, 0, true}, {1, SIGINT, 1, true}}), -1);
  EXPECT_EQ(first_failure({}), -1);
}

TEST(Launch, AllWorkersSucceedAndOtherRanksArePrefixed) {
  auto r = run_qsched("launch --nproc 2 -- train --help", 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("qsched launch: 2 workers, MASTER_ADDR=127.0.0.1 MASTER_PORT="),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\nusage: qsched train"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank 1] usage: qsched train"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[rank 0] "), std::string::npos) << r.output;
}

TEST(Launch, FailingWorkersGiveTheirExitCodeAndTheRank) {
  auto r = run_qsched("launch --nproc 2 -- train --config /nonexistent.json --out /tmp/x", 120);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("[rank 1] qsched train: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("qsched launch: error: rank "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" of 2 exited with code 2 (first failure)"), std::string::npos)
      << r.output;
}

TEST(Launch, LogDirHoldsTheOtherRanksOutput) {
  qsched::test::TempDir dir;
  auto r = run_qsched("launch --nproc 3 --log-dir " + dir.file("logs") +
                          " -- train --config /nonexistent.json --out /tmp/x",
                      120);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output.find("[rank"), std::string::npos) << r.output;
  for (int k = 1; k <= 2; ++k) {
    std::string log = qsched::test::read_file(dir.file("logs/rank_" + std::to_string(k) + ".log"));
    EXPECT_NE(log.find("qsched train: error:"), std::string::npos) << k << ": " << log;
  }
}

TEST(Launch, KilledWorkerStopsTheOthersAndIsNamed) {
  qsched::test::TempDir dir;
  std::string log = dir.file("launch.log");
  auto r = run_shell(
      "env -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS " + qsched::test::qsched_binary() +
      " launch --nproc 2 --grace 1 -- bench --seconds 600 > " + log + " 2>&1 & L=$!; " +
      find_workers(2) +
      "tr '\\0' '\\n' < /proc/$C1/environ | grep -E "
      "'^(RANK|WORLD_SIZE|LOCAL_RANK|MASTER_ADDR|MASTER_PORT|OMP_NUM_THREADS|QSCHED_DIST_TOKEN)=' "
      "| sort | sed 's/^/env1 /'; "
      "tr '\\0' '\\n' < /proc/$C0/environ | grep '^QSCHED_DIST_TOKEN=' | sed 's/^/env0 /'; "
      "kill -9 $C1; " +
      kWaitLauncher + "sleep 0.2; kill -0 $C0 2>/dev/null && echo rank0_alive || echo rank0_gone");
  std::string out = r.output + qsched::test::read_file(log);
  EXPECT_NE(out.find("env1 RANK=1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("env1 LOCAL_RANK=1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("env1 WORLD_SIZE=2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("env1 MASTER_ADDR=127.0.0.1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("env1 MASTER_PORT="), std::string::npos) << out;
  EXPECT_NE(out.find("env1 OMP_NUM_THREADS=1\n"), std::string::npos) << out;
  // A generated token (none was set): 32 hex digits, the same for every worker, not printed.
  auto token_of = [&](const std::string& who) {
    auto at = out.find(who + " QSCHED_DIST_TOKEN=");
    if (at == std::string::npos) return std::string("(none)");
    at += who.size() + 19;
    return out.substr(at, out.find('\n', at) - at);
  };
  const std::string token = token_of("env1");
  EXPECT_EQ(token.size(), 32u) << out;
  EXPECT_EQ(token.find_first_not_of("0123456789abcdef"), std::string::npos) << out;
  EXPECT_EQ(token_of("env0"), token) << out;
  EXPECT_EQ(qsched::test::read_file(log).find(token), std::string::npos);
  EXPECT_NE(out.find("launch_exit=137"), std::string::npos) << out;
  EXPECT_NE(out.find("qsched launch: error: rank 1 of 2 was killed by signal 9"), std::string::npos)
      << out;
  EXPECT_NE(out.find("rank0_gone"), std::string::npos) << out;
}

TEST(Launch, SigtermIsForwardedToEveryWorker) {
  qsched::test::TempDir dir;
  std::string log = dir.file("launch.log");
  // (with a token of the user's, which the workers get unchanged)
  auto r = run_shell("QSCHED_DIST_TOKEN=users-own-token-0123 " + qsched::test::qsched_binary() +
                     " launch --nproc 2 -- bench --seconds 600 > " + log + " 2>&1 & L=$!; " +
                     find_workers(2) +
                     "for c in $C0 $C1; do tr '\\0' '\\n' < /proc/$c/environ | "
                     "grep '^QSCHED_DIST_TOKEN='; done; "
                     "kill -TERM $L; " +
                     kWaitLauncher +
                     "sleep 0.2; for c in $C0 $C1; do kill -0 $c 2>/dev/null && echo "
                     "worker_alive; done; echo done");
  std::string out = r.output + qsched::test::read_file(log);
  size_t first = out.find("QSCHED_DIST_TOKEN=users-own-token-0123\n");
  EXPECT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.find("QSCHED_DIST_TOKEN=users-own-token-0123\n", first + 1), std::string::npos)
      << out;
  EXPECT_NE(out.find("launch_exit=130"), std::string::npos) << out;
  EXPECT_EQ(out.find("worker_alive"), std::string::npos) << out;
  EXPECT_EQ(out.find("first failure"), std::string::npos) << out;
}
