// meta/distributed.h (qsched's store + ProcessGroupGloo), loopback only.
//
// Ranks run either as threads of this process (each with its own store client and Gloo
// group) or as separate processes: this test binary re-executes itself with the launch
// variables and --gtest_filter=DistributedWorker.DISABLED_Run, a worker body that is never
// run by a plain test run (DISABLED_) and reads its scenario from QSCHED_TEST_SCENARIO.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <thread>

#include "meta/distributed.h"
#include "meta/es.h"
#include "tests/util/raw_socket.h"
#include "tests/util/test_util.h"

namespace qsched::meta {
namespace {

using Env = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------------------
// A fixed sequence of collectives and its expected transcript, computed without any
// communication: what every rank must see.

// Rank r's contribution at step s: lengths 0..3 differ between ranks, and the values are
// awkward bit patterns (NaN with a payload, -0, infinities, a subnormal, 1/3).
std::vector<double> contribution(int rank, int step) {
  std::vector<double> v;
  int n = (rank + step) % 4;
  for (int i = 0; i < n; ++i) {
    uint64_t bits;
    switch ((rank * 7 + step * 3 + i) % 6) {
      case 0:
        bits = 0x7ff8dead0000beefULL + rank;
        break;  // quiet NaN with payload
      case 1:
        bits = 0x8000000000000000ULL;
        break;  // -0.0
      case 2:
        bits = 0xfff0000000000000ULL;
        break;  // -inf
      case 3:
        bits = 0x0000000000000001ULL;
        break;  // smallest subnormal
      default: {
        double d = (rank + 1.0) / (3.0 + step + i);
        std::memcpy(&bits, &d, 8);
      }
    }
    double d;
    std::memcpy(&d, &bits, 8);
    v.push_back(d);
  }
  return v;
}

std::string payload(int root) {
  if (root == 1) return "";  // empty broadcast
  std::string s = "root " + std::to_string(root) + std::string(1, '\0') + "\xff\x01 bytes";
  s += std::string(1000 * (root + 1), static_cast<char>('a' + root));
  return s;
}

std::string hex_bits(const std::vector<std::vector<double>>& all) {
  std::ostringstream out;
  for (const auto& v : all) {
    out << "[";
    for (double d : v) {
      uint64_t b;
      std::memcpy(&b, &d, 8);
      out << std::hex << b << " ";
    }
    out << "]";
  }
  return out.str();
}

std::string hex_bytes(const std::string& s) {
  std::ostringstream out;
  for (unsigned char c : s) out << std::hex << static_cast<int>(c) << ".";
  return out.str();
}

constexpr int kSteps = 5;

std::string exchange(Collective& c) {
  std::ostringstream out;
  for (int s = 0; s < kSteps; ++s)
    out << "allgather " << s << " " << hex_bits(c.allgather(contribution(c.rank(), s))) << "\n";
  for (int root = 0; root < c.world_size(); ++root) {
    std::string mine = c.rank() == root ? payload(root) : "not the root's bytes";
    out << "broadcast " << root << " " << hex_bytes(c.broadcast(mine, root)) << "\n";
  }
  c.barrier();
  out << "barrier\n";
  return out.str();
}

std::string expected_exchange(int world) {
  std::ostringstream out;
  for (int s = 0; s < kSteps; ++s) {
    std::vector<std::vector<double>> all;
    for (int r = 0; r < world; ++r) all.push_back(contribution(r, s));
    out << "allgather " << s << " " << hex_bits(all) << "\n";
  }
  for (int root = 0; root < world; ++root)
    out << "broadcast " << root << " " << hex_bytes(payload(root)) << "\n";
  out << "barrier\n";
  return out.str();
}

const std::string kToken = "test-token-0123456789abcdef";

DistributedOptions loopback(int port, int rank, int world, double timeout = 60) {
  return DistributedOptions("127.0.0.1", port, rank, world).timeout_seconds(timeout).token(kToken);
}

// Runs `body(rank)` on `world` threads and returns what each returned (or the error).
std::vector<std::string> on_threads(int world, const std::function<std::string(int)>& body) {
  std::vector<std::string> out(world);
  std::vector<std::thread> ts;
  for (int r = 0; r < world; ++r)
    ts.emplace_back([&, r] {
      try {
        out[r] = body(r);
      } catch (const c10::ValueError& e) {
        out[r] = std::string("ValueError: ") + e.what_without_backtrace();
      } catch (const c10::Error& e) {
        out[r] = std::string("Error: ") + e.what_without_backtrace();
      }
    });
  for (auto& t : ts) t.join();
  return out;
}

std::string self_binary() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : "";
}

// Starts `world` processes of this binary running the worker test; each one's output goes to
// DIR/rank_R.txt and its exit code to DIR/rank_R.code. Returns when all have exited (every
// worker is bounded by `timeout` seconds).
void run_worker_processes(const test::TempDir& dir, int world, const std::string& scenario,
                          double dist_timeout) {
  int port = free_loopback_port();
  std::string script;
  for (int r = 0; r < world; ++r) {
    script += "( MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
              " RANK=" + std::to_string(r) + " WORLD_SIZE=" + std::to_string(world) +
              " QSCHED_DIST_TIMEOUT=" + std::to_string(dist_timeout) +
              " QSCHED_DIST_TOKEN=" + kToken + " QSCHED_TEST_SCENARIO=" + scenario +
              " OMP_NUM_THREADS=1 timeout -s KILL 120 " + self_binary() +
              " --gtest_also_run_disabled_tests --gtest_filter=DistributedWorker.DISABLED_Run" +
              " > " + dir.file("rank_" + std::to_string(r) + ".txt") + " 2>&1; echo $? > " +
              dir.file("rank_" + std::to_string(r) + ".code") + " ) & ";
  }
  script += "wait";
  test::run_shell(script);
}

int worker_code(const test::TempDir& dir, int rank) {
  std::string s = test::read_file(dir.file("rank_" + std::to_string(rank) + ".code"));
  return s.empty() ? -1 : std::stoi(s);
}

std::string worker_output(const test::TempDir& dir, int rank) {
  return test::read_file(dir.file("rank_" + std::to_string(rank) + ".txt"));
}

// The transcript a worker printed between its markers.
std::string transcript(const std::string& output) {
  auto a = output.find("<<<\n"), b = output.find(">>>\n");
  if (a == std::string::npos || b == std::string::npos || b < a) return "(no transcript)";
  return output.substr(a + 4, b - a - 4);
}

// ---------------------------------------------------------------------------------------
// Launch variables

Env good_env(int rank = 1, int world = 3) {
  return {{"WORLD_SIZE", std::to_string(world)},
          {"RANK", std::to_string(rank)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", "29511"},
          {"QSCHED_DIST_TOKEN", "0123456789abcdef"}};
}

TEST(DistributedOptions, DefaultsAreValid) {
  // A group of several ranks has no default secret: the token is the one required field.
  EXPECT_NO_THROW(DistributedOptions("127.0.0.1", 29500, 0, 2).token(kToken).validate());
  EXPECT_VALUE_ERROR(DistributedOptions("127.0.0.1", 29500, 0, 2).validate(),
                     "QSCHED_DIST_TOKEN is not set");
  EXPECT_NO_THROW(DistributedOptions("", 0, 0, 1).validate());  // world 1 needs no master
}

TEST(DistributedEnv, UnsetOrWorldOneMeansLocal) {
  EXPECT_FALSE(distributed_options_from_env(Env{}).has_value());
  EXPECT_FALSE(distributed_options_from_env(Env{{"WORLD_SIZE", "1"}}).has_value());
  EXPECT_FALSE(distributed_options_from_env(Env{{"WORLD_SIZE", "1"}, {"RANK", "0"}}).has_value());
}

TEST(DistributedEnv, ParsesAllVariables) {
  Env env = good_env(2, 3);
  env["QSCHED_DIST_TIMEOUT"] = "7.5";
  env["GLOO_SOCKET_IFNAME"] = "lo";
  auto o = distributed_options_from_env(env);
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->rank(), 2);
  EXPECT_EQ(o->world_size(), 3);
  EXPECT_EQ(o->master_addr(), "127.0.0.1");
  EXPECT_EQ(o->master_port(), 29511);
  EXPECT_EQ(o->timeout_seconds(), 7.5);
  EXPECT_EQ(o->interface(), "lo");
  EXPECT_EQ(o->token(), "0123456789abcdef");
}

TEST(DistributedEnv, BadValuesNameTheVariableAndTheRule) {
  auto with = [](const std::string& k, const std::string& v) {
    Env e = good_env();
    e[k] = v;
    return e;
  };
  auto without = [](const std::string& k) {
    Env e = good_env();
    e.erase(k);
    return e;
  };
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("WORLD_SIZE", "two")),
                     "WORLD_SIZE='two' is not an integer");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("WORLD_SIZE", "2x")), "WORLD_SIZE='2x'");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("WORLD_SIZE", "0")), "WORLD_SIZE >= 1");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("WORLD_SIZE", "99999999999999")),
                     "WORLD_SIZE");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("RANK", "3")),
                     "RANK=3 with WORLD_SIZE=3. Violated constraint: 0 <= RANK < WORLD_SIZE");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("RANK", "-1")), "0 <= RANK");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("RANK", "")), "RANK='' is not an integer");
  EXPECT_VALUE_ERROR(distributed_options_from_env(without("RANK")), "RANK is not set");
  EXPECT_VALUE_ERROR(distributed_options_from_env(without("MASTER_PORT")),
                     "MASTER_PORT is not set");
  EXPECT_VALUE_ERROR(distributed_options_from_env(without("MASTER_ADDR")),
                     "MASTER_ADDR is not set");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("MASTER_ADDR", "")), "MASTER_ADDR is empty");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("MASTER_PORT", "http")),
                     "MASTER_PORT='http' is not an integer");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("MASTER_PORT", "70000")),
                     "1 <= MASTER_PORT <= 65535");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("QSCHED_DIST_TIMEOUT", "soon")),
                     "QSCHED_DIST_TIMEOUT='soon' is not a number");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("QSCHED_DIST_TIMEOUT", "0")),
                     "0 < QSCHED_DIST_TIMEOUT");
  EXPECT_VALUE_ERROR(distributed_options_from_env(Env{{"RANK", "1"}}),
                     "RANK=1 is set but WORLD_SIZE is not");
  EXPECT_VALUE_ERROR(distributed_options_from_env(without("QSCHED_DIST_TOKEN")),
                     "QSCHED_DIST_TOKEN is not set but WORLD_SIZE=3. Violated constraint: every "
                     "rank sets the same secret QSCHED_DIST_TOKEN");
  EXPECT_VALUE_ERROR(distributed_options_from_env(with("QSCHED_DIST_TOKEN", "")),
                     "QSCHED_DIST_TOKEN is not set");
  // The message gives the length, never the secret.
  try {
    distributed_options_from_env(with("QSCHED_DIST_TOKEN", "s3cr3t"));
    ADD_FAILURE() << "a 6-character token was accepted";
  } catch (const c10::ValueError& e) {
    std::string m = e.what_without_backtrace();
    EXPECT_NE(m.find("QSCHED_DIST_TOKEN has 6 characters. Violated constraint: 16 <= length"),
              std::string::npos)
        << m;
    EXPECT_EQ(m.find("s3cr3t"), std::string::npos) << m;
  }
  EXPECT_VALUE_ERROR(make_collective(DistributedOptions("127.0.0.1", 29511, 0, 2)),
                     "QSCHED_DIST_TOKEN is not set");
  EXPECT_VALUE_ERROR(distributed_options_from_env(Env{{"WORLD_SIZE", "1"}, {"RANK", "1"}}),
                     "RANK=1 with WORLD_SIZE=1");
}

TEST(DistributedEnv, WorldOneIsLocalCollective) {
  auto c = make_collective(DistributedOptions("", 0, 0, 1));
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_EQ(exchange(*c), expected_exchange(1));
}

// ---------------------------------------------------------------------------------------
// Collectives (ranks as threads)

class GlooThreads : public ::testing::TestWithParam<int> {};

TEST_P(GlooThreads, EveryRankSeesTheSameBitExactResults) {
  const int world = GetParam();
  const int port = free_loopback_port();
  auto out = on_threads(world, [&](int r) {
    auto c = make_collective(loopback(port, r, world));
    EXPECT_EQ(c->rank(), r);
    EXPECT_EQ(c->world_size(), world);
    return exchange(*c);
  });
  const std::string want = expected_exchange(world);
  for (int r = 0; r < world; ++r) EXPECT_EQ(out[r], want) << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(World, GlooThreads, ::testing::Values(2, 3));

// Dynamic work sharing: every member of every round runs exactly once over all threads of all
// ranks, whoever is faster takes more, and every rank returns the same rows.
TEST_P(GlooThreads, EvaluateMembersSharesTheWorkAndGathersEveryRow) {
  const int world = GetParam();
  const int port = free_loopback_port();
  constexpr int kRounds = 3, kCount = 11;
  std::atomic<int> runs[kRounds][kCount] = {};
  std::atomic<int> by_rank[3] = {};
  auto out = on_threads(world, [&](int r) {
    auto c = make_collective(loopback(port, r, world));
    std::ostringstream text;
    for (int round = 0; round < kRounds; ++round) {
      std::vector<double> cost;
      for (int m = 0; m < kCount; ++m) cost.push_back((m * 7) % 5);
      EvalTiming timing;
      auto rows = evaluate_members(
          kCount, 2, 2, *c,
          [&](int64_t m) {
            ++runs[round][m];
            ++by_rank[r];
            // rank 0 is slow: the others must take more of the work
            std::this_thread::sleep_for(std::chrono::milliseconds(r == 0 ? 100 : 5));
            return std::vector<double>{double(m) / 3.0, double(round)};
          },
          cost, &timing);
      text << hex_bits(rows) << "\n";
      EXPECT_GT(timing.busy_seconds, 0.0);
      EXPECT_GE(timing.slot_seconds, timing.busy_seconds);
    }
    return text.str();
  });
  std::ostringstream want;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<double>> rows;
    for (int m = 0; m < kCount; ++m) rows.push_back({double(m) / 3.0, double(round)});
    want << hex_bits(rows) << "\n";
  }
  for (int r = 0; r < world; ++r) EXPECT_EQ(out[r], want.str()) << "rank " << r;
  for (int round = 0; round < kRounds; ++round)
    for (int m = 0; m < kCount; ++m) EXPECT_EQ(runs[round][m].load(), 1) << round << " " << m;
  for (int r = 1; r < world; ++r) EXPECT_GT(by_rank[r].load(), by_rank[0].load()) << r;
}

TEST(GlooRendezvous, UnreachableMasterFailsWithinTheTimeout) {
  const int port = free_loopback_port();  // nobody listens there
  EXPECT_VALUE_ERROR(make_collective(loopback(port, 1, 2, 1.0)),
                     "rank 1 cannot reach the master at MASTER_ADDR:MASTER_PORT=127.0.0.1:");
}

TEST(GlooRendezvous, MissingRanksFailWithinTheTimeout) {
  const int port = free_loopback_port();
  EXPECT_VALUE_ERROR(make_collective(loopback(port, 0, 2, 1.0)), "WORLD_SIZE=2");
}

TEST(GlooRendezvous, TakenPortIsAClearError) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  EXPECT_VALUE_ERROR(make_collective(loopback(port, 0, 2, 1.0)),
                     "rank 0 cannot listen on MASTER_PORT=" + std::to_string(port));
  close(fd);
}

TEST(GlooRendezvous, DifferentWorldSizesAreRejected) {
  const int port = free_loopback_port();
  auto out = on_threads(2, [&](int r) -> std::string {
    make_collective(loopback(port, r, r == 0 ? 2 : 3, 6.0));
    return "joined";
  });
  EXPECT_NE(out[1].find("ValueError: WORLD_SIZE=3 on rank 1 but WORLD_SIZE=2 on rank 0"),
            std::string::npos)
      << out[1];
  EXPECT_NE(out[0].find("ValueError: "), std::string::npos) << out[0];
}

TEST(GlooRendezvous, RankUsedTwiceIsRejected) {
  const int port = free_loopback_port();
  // The two that join keep their collective (and rank 0 its store) alive until the duplicate
  // has been turned away, as processes of a real run would: a store torn down early would make
  // the duplicate fail with "cannot reach the master" instead.
  std::atomic<int> rejected_threads{0};
  auto out = on_threads(3, [&](int r) -> std::string {
    std::unique_ptr<Collective> c;
    try {
      c = make_collective(loopback(port, r == 2 ? 1 : r, 2, 10.0));
    } catch (...) {
      ++rejected_threads;
      throw;
    }
    for (int i = 0; i < 1500 && rejected_threads.load() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return "joined";
  });
  int rejected = 0;
  for (const auto& o : out)
    rejected += o.find("ValueError: RANK=1 is used by more than one process") != std::string::npos;
  EXPECT_EQ(rejected, 1) << out[0] << "\n" << out[1] << "\n" << out[2];
}

// The store that the launch tests and `qsched launch` use: on MASTER_ADDR only, and closed to
// a process without the token, while the group works normally.
TEST(GlooRendezvous, StoreListensOnlyOnMasterAddrAndRefusesAWrongToken) {
  const int port = free_loopback_port();
  std::string elsewhere, stranger;
  auto out = on_threads(2, [&](int r) -> std::string {
    auto c = make_collective(loopback(port, r, 2));
    if (r == 0) {
      int fd = test::tcp_connect("127.0.0.2", port);  // also this machine, not MASTER_ADDR
      elsewhere = fd < 0 ? std::strerror(errno) : "connected";
      if (fd >= 0) close(fd);
      try {
        make_collective(loopback(port, 1, 2).token("not-the-token-0123456789"));
        stranger = "joined";
      } catch (const c10::ValueError& e) {
        stranger = e.what_without_backtrace();
      }
    }
    return exchange(*c);
  });
  EXPECT_EQ(elsewhere, std::strerror(ECONNREFUSED));
  EXPECT_NE(stranger.find("rank 1: rank 0's store at 127.0.0.1:" + std::to_string(port) +
                          " refused this process's QSCHED_DIST_TOKEN"),
            std::string::npos)
      << stranger;
  for (int r = 0; r < 2; ++r) EXPECT_EQ(out[r], expected_exchange(2)) << "rank " << r;
}

TEST(GlooRendezvous, RankWithAWrongTokenIsNamedOnBothSides) {
  const int port = free_loopback_port();
  auto out = on_threads(2, [&](int r) -> std::string {
    auto o = loopback(port, r, 2, 8.0);
    if (r == 1) o.token("not-the-token-0123456789");
    make_collective(o);
    return "joined";
  });
  EXPECT_NE(out[1].find("ValueError: rank 1: rank 0's store at 127.0.0.1:" + std::to_string(port) +
                        " refused this process's QSCHED_DIST_TOKEN"),
            std::string::npos)
      << out[1];
  EXPECT_NE(out[0].find("not all of WORLD_SIZE=2 ranks connected within 8 s"), std::string::npos)
      << out[0];
  EXPECT_NE(out[0].find("and refused 1 connection(s) that did not prove "
                        "QSCHED_DIST_TOKEN"),
            std::string::npos)
      << out[0];
}

TEST(GlooRendezvous, MasterAddrMustBeThisMachinesOnRankZero) {
  // 192.0.2.1 (TEST-NET-1) is not an address here: rank 0 says so at once (nothing is sent).
  EXPECT_VALUE_ERROR(make_collective(DistributedOptions("192.0.2.1", free_loopback_port(), 0, 2)
                                         .timeout_seconds(60)
                                         .token(kToken)
                                         .interface("lo")),
                     "MASTER_ADDR=192.0.2.1 (192.0.2.1) is not an address of this machine");
}

TEST(GlooRendezvous, BadBroadcastRootIsRejected) {
  const int port = free_loopback_port();
  auto out = on_threads(2, [&](int r) -> std::string {
    auto c = make_collective(loopback(port, r, 2));
    try {
      c->broadcast("x", 2);
    } catch (const c10::ValueError& e) {
      c->barrier();  // the group is still usable: the check happens before communicating
      return e.what_without_backtrace();
    }
    return "accepted";
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_NE(out[r].find("0 <= root < world_size = 2"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Ranks as processes

// The worker body (run only when re-executed by the tests below).
TEST(DistributedWorker, DISABLED_Run) {
  const char* scenario = std::getenv("QSCHED_TEST_SCENARIO");
  ASSERT_NE(scenario, nullptr) << "run through the multi-process tests only";
  auto c = make_collective_from_env();
  if (std::string(scenario) == "exchange") {
    std::string t = exchange(*c);
    std::printf("rank %d of %d\n<<<\n%s>>>\n", c->rank(), c->world_size(), t.c_str());
    std::fflush(stdout);
    return;
  }
  // "die": the last rank is killed (SIGKILL, no clean-up) during the 3rd step; "hang": it
  // stops answering for 4 timeouts. The others keep calling collectives and must fail with a
  // clear error instead of waiting forever.
  const std::string sc = scenario;
  ASSERT_TRUE(sc == "die" || sc == "hang") << sc;
  const bool victim = c->rank() == c->world_size() - 1;
  try {
    for (int s = 0; s < 1000; ++s) {
      if (victim && s == 2 && sc == "die") raise(SIGKILL);
      if (victim && s == 2 && sc == "hang") {
        double t = std::stod(std::getenv("QSCHED_DIST_TIMEOUT"));
        std::this_thread::sleep_for(std::chrono::duration<double>(4 * t));
        std::_Exit(0);
      }
      c->allgather(contribution(c->rank(), s));
    }
  } catch (const c10::Error& e) {
    std::printf("collective error: %s\n", e.what_without_backtrace());
    std::fflush(stdout);
    std::_Exit(3);
  }
  std::printf("no error\n");
}

class GlooProcesses : public ::testing::TestWithParam<int> {};

TEST_P(GlooProcesses, EnvRendezvousAndIdenticalResults) {
  const int world = GetParam();
  test::TempDir dir;
  run_worker_processes(dir, world, "exchange", 60);
  const std::string want = expected_exchange(world);
  for (int r = 0; r < world; ++r) {
    std::string out = worker_output(dir, r);
    EXPECT_EQ(worker_code(dir, r), 0) << out;
    EXPECT_NE(out.find("rank " + std::to_string(r) + " of " + std::to_string(world)),
              std::string::npos)
        << out;
    EXPECT_EQ(transcript(out), want) << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(World, GlooProcesses, ::testing::Values(2, 3));

TEST(GlooProcesses, KilledRankMakesTheOthersFailClearly) {
  test::TempDir dir;
  // The group timeout (60 s) stays below the workers' hard limit (120 s): a hang would show
  // up as exit code 137 instead of 3.
  run_worker_processes(dir, 3, "die", 60);
  EXPECT_EQ(worker_code(dir, 2), 128 + SIGKILL) << worker_output(dir, 2);
  for (int r = 0; r < 2; ++r) {
    std::string out = worker_output(dir, r);
    EXPECT_EQ(worker_code(dir, r), 3) << out;
    EXPECT_NE(out.find("collective error: distributed allgather failed on rank " +
                       std::to_string(r) + " of 3"),
              std::string::npos)
        << out;
  }
}

TEST(GlooProcesses, HungRankMakesTheOthersFailAfterTheTimeout) {
  test::TempDir dir;
  run_worker_processes(dir, 3, "hang", 2);
  EXPECT_EQ(worker_code(dir, 2), 0) << worker_output(dir, 2);
  for (int r = 0; r < 2; ++r) {
    std::string out = worker_output(dir, r);
    EXPECT_EQ(worker_code(dir, r), 3) << out;
    EXPECT_NE(out.find("collective error: distributed allgather failed on rank " +
                       std::to_string(r) + " of 3: a peer exited or did not answer within 2 s"),
              std::string::npos)
        << out;
  }
}

}  // namespace
}  // namespace qsched::meta
