// qsched launch: N local workers of this same program, wired for meta/distributed.h.
//
//   qsched launch --nproc N [--master-port P] [--grace S] [--log-dir DIR] -- <command> [flags]
//
//   launcher ──fork/exec /proc/self/exe <command> [flags]──> rank 0 .. N-1
//     env per worker: MASTER_ADDR=127.0.0.1 MASTER_PORT RANK WORLD_SIZE LOCAL_RANK
//                     LOCAL_WORLD_SIZE, OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (unless set),
//                     QSCHED_DIST_TOKEN (the launcher's own if set, else 128 random bits; the
//                     same for every worker, never printed)
//     output: rank 0 inherits the terminal; ranks >= 1 go through a pipe, printed with a
//             "[rank R] " prefix on stderr (or to DIR/rank_R.log with --log-dir)
//     SIGINT/SIGTERM to the launcher are forwarded once to every worker (workers run in
//             their own process groups, so a terminal's Ctrl-C reaches them only this way)
//     first failure (non-zero exit or signal): the others get `grace` seconds to exit on
//             their own (a dead peer makes their next collective fail), then SIGTERM, then
//             SIGKILL 5 s later; when all have ended the launcher names one failing rank
//             (experiments/launch.h: a signal death before an exit code, exit 3 "peer lost"
//             last) and exits with its code (128+signal for a signal)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "experiments/cli.h"
#include "experiments/launch.h"
#include "experiments/run_flags.h"
#include "inner/runtime.h"
#include "meta/distributed.h"
#include "meta/sha256.h"

extern char** environ;

namespace po = boost::program_options;

namespace qsched::cli {

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_pending_signal = 0;
volatile sig_atomic_t g_signal_count = 0;

void on_launcher_signal(int sig) {
  g_pending_signal = sig;
  g_signal_count = g_signal_count + 1;
}

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  TORCH_CHECK(n > 0, "launch: cannot read /proc/self/exe: ", std::strerror(errno));
  return std::string(buf, n);
}

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  int out_fd = -1;      ///< read end of the pipe (ranks >= 1 without --log-dir), else -1
  std::string partial;  ///< output after the last newline
  bool exited = false;
  int status = 0;
  int order = -1;               ///< position in the order of reaping
  bool signaled_by_us = false;  ///< the launcher sent it a signal (forwarded or its own stop)
};

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitInternal;
}

// Prints complete lines from a worker's pipe with its prefix; `flush` prints the rest too.
void emit(Worker& w, const char* data, size_t n, bool flush) {
  w.partial.append(data, n);
  size_t start = 0, nl;
  while ((nl = w.partial.find('\n', start)) != std::string::npos) {
    std::fprintf(stderr, "[rank %d] %.*s\n", w.rank, static_cast<int>(nl - start),
                 w.partial.data() + start);
    start = nl + 1;
  }
  w.partial.erase(0, start);
  if (flush && !w.partial.empty()) {
    std::fprintf(stderr, "[rank %d] %s\n", w.rank, w.partial.c_str());
    w.partial.clear();
  }
}

// Reads what is available on the workers' pipes, waiting at most `wait_ms`.
void pump(std::vector<Worker>& ws, int wait_ms) {
  std::vector<pollfd> fds;
  std::vector<Worker*> owners;
  for (auto& w : ws)
    if (w.out_fd >= 0) {
      fds.push_back({w.out_fd, POLLIN, 0});
      owners.push_back(&w);
    }
  if (fds.empty()) {
    if (wait_ms > 0) poll(nullptr, 0, wait_ms);
    return;
  }
  if (poll(fds.data(), fds.size(), wait_ms) <= 0) return;
  char buf[4096];
  for (size_t i = 0; i < fds.size(); ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = read(fds[i].fd, buf, sizeof(buf));
    if (n > 0) {
      emit(*owners[i], buf, n, false);
    } else if (n == 0 || errno != EINTR) {
      emit(*owners[i], "", 0, true);
      close(owners[i]->out_fd);
      owners[i]->out_fd = -1;
    }
  }
  std::fflush(stderr);
}

// After the launcher sent a worker SIGINT/SIGTERM/SIGKILL (forwarded from the user, or its
// own stop after a failure), "interrupted" (130) or dying of one of those signals is the
// expected outcome, not a failure of that worker.
bool stopped_by_launcher(bool signaled_by_us, int status) {
  if (!signaled_by_us) return false;
  if (WIFEXITED(status)) return WEXITSTATUS(status) == kExitInterrupted;
  if (!WIFSIGNALED(status)) return false;
  const int sig = WTERMSIG(status);
  return sig == SIGINT || sig == SIGTERM || sig == SIGKILL;
}

void signal_alive(std::vector<Worker>& ws, int sig) {
  for (auto& w : ws)
    if (!w.exited && w.pid > 0) {
      w.signaled_by_us = true;
      kill(w.pid, sig);
    }
}

}  // namespace

int first_failure(const std::vector<WorkerEnd>& ends) {
  auto klass = [](const WorkerEnd& e) {
    const int st = e.status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return -1;
    if (stopped_by_launcher(e.signaled_by_us, st)) return -1;
    if (WIFSIGNALED(st)) return 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == kExitPeerLost) return 2;
    return 1;
  };
  int best = -1;
  for (int i = 0; i < static_cast<int>(ends.size()); ++i) {
    const int k = klass(ends[i]);
    if (k < 0) continue;
    if (best < 0 || k < klass(ends[best]) ||
        (k == klass(ends[best]) && ends[i].order < ends[best].order))
      best = i;
  }
  return best;
}

int cmd_launch(const std::vector<std::string>& all_args) {
  // Everything after the first "--" is the worker command; it is passed through untouched.
  std::vector<std::string> args, command;
  bool separated = false;
  for (const auto& a : all_args) {
    if (!separated && a == "--") {
      separated = true;
      continue;
    }
    (separated ? command : args).push_back(a);
  }

  int nproc = 0, master_port = 0;
  double grace = 10;
  std::string log_dir;
  po::options_description desc("qsched launch flags");
  desc.add_options()("help,h", "show this help")("nproc", po::value(&nproc)->required(),
                                                 "number of local workers (ranks), 1..256")(
      "master-port", po::value(&master_port)->default_value(0),
      "TCP port of rank 0's rendezvous store, which listens on 127.0.0.1 only (0 = a free "
      "port)")("grace", po::value(&grace)->default_value(grace),
               "seconds the other workers get to exit after one fails, before SIGTERM")(
      "log-dir", po::value(&log_dir),
      "write rank R >= 1's output to DIR/rank_R.log instead of prefixing it");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched launch --nproc N [--master-port P] [--grace S] "
                   "[--log-dir DIR] -- <command> [flags]\n\n"
                   "Starts N local workers running `qsched <command> [flags]` with "
                   "MASTER_ADDR=127.0.0.1,\nMASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK and one "
                   "thread each (OMP_NUM_THREADS=1\nunless set). Rank 0 prints to the terminal, "
                   "the others with a \"[rank R] \" prefix.\nSIGINT/SIGTERM are forwarded. When "
                   "a worker fails the others are stopped and the\nexit code is the failing "
                   "rank's (a worker killed by a signal is named before ranks that\nthen lost "
                   "their peer).\n\n"
                   "Rank 0's store listens on 127.0.0.1 only and admits only processes that "
                   "prove they know\nQSCHED_DIST_TOKEN: the launcher passes its own "
                   "QSCHED_DIST_TOKEN to the workers, or\ngenerates a random one (128 bits) "
                   "when it is unset.\n\n"
                   "Several machines: run the command on each host with MASTER_ADDR (rank 0's "
                   "address on\nthe network the hosts share; rank 0's store listens there "
                   "only), MASTER_PORT, RANK,\nWORLD_SIZE and the same secret "
                   "QSCHED_DIST_TOKEN (16..1024 characters, e.g. the output of\n"
                   "`head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'`) set instead; "
                   "see README,\nDistributed meta-training. The network between the hosts "
                   "must be trusted: the traffic\nis neither encrypted nor signed."))
    return kExitOk;
  TORCH_CHECK_VALUE(separated,
                    "launch needs '--' before the worker command, e.g. qsched "
                    "launch --nproc 2 -- meta-train --config FILE --out DIR");
  TORCH_CHECK_VALUE(!command.empty(), "launch: no worker command after '--'");
  TORCH_CHECK_VALUE(command[0] != "launch", "launch: the worker command cannot be launch");
  TORCH_CHECK_VALUE(nproc >= 1 && nproc <= 256, "--nproc ", nproc,
                    ". Violated constraint: 1 <= --nproc <= 256");
  TORCH_CHECK_VALUE(master_port >= 0 && master_port <= 65535, "--master-port ", master_port,
                    ". Violated constraint: 0 <= --master-port <= 65535 (0 = a free port)");
  TORCH_CHECK_VALUE(grace >= 0 && grace <= 3600, "--grace ", grace,
                    ". Violated constraint: 0 <= --grace <= 3600 (seconds)");
  if (!log_dir.empty()) {
    mkdir(log_dir.c_str(), 0777);
    struct stat st {};
    TORCH_CHECK_VALUE(stat(log_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "--log-dir ", log_dir,
                      " is not a directory and cannot be created");
  }
  if (master_port == 0) master_port = meta::free_loopback_port();

  const std::string exe = self_exe();
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), command.begin(), command.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  // The launcher's environment minus the variables it sets per worker.
  const std::vector<std::string> managed = {"MASTER_ADDR", "MASTER_PORT", "RANK",
                                            "WORLD_SIZE",  "LOCAL_RANK",  "LOCAL_WORLD_SIZE"};
  std::vector<std::string> base_env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    bool skip = false;
    for (const auto& m : managed) skip |= key == m;
    if (!skip) base_env.push_back(kv);
  }
  // The store's shared secret: the user's (checked here, once, instead of in every worker)
  // or a fresh random one. It reaches the workers through their environment only.
  if (const char* t = std::getenv("QSCHED_DIST_TOKEN"))
    meta::check_dist_token(t);
  else
    base_env.push_back("QSCHED_DIST_TOKEN=" + meta::random_token());
  if (!std::getenv("OMP_NUM_THREADS")) base_env.push_back("OMP_NUM_THREADS=1");
  if (!std::getenv("OPENBLAS_NUM_THREADS")) base_env.push_back("OPENBLAS_NUM_THREADS=1");

  // Signals are recorded, then forwarded from the loop below.
  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::fprintf(stderr, "qsched launch: %d worker%s, MASTER_ADDR=127.0.0.1 MASTER_PORT=%d%s\n",
               nproc, nproc == 1 ? "" : "s", master_port,
               nproc > 1 ? (log_dir.empty() ? ", ranks >= 1 prefixed [rank R]"
                                            : (", ranks >= 1 in " + log_dir).c_str())
                         : "");
  std::fflush(stderr);

  const pid_t launcher = getpid();
  std::vector<Worker> ws(nproc);
  for (int r = 0; r < nproc; ++r) {
    Worker& w = ws[r];
    w.rank = r;
    std::vector<std::string> env_s = base_env;
    env_s.push_back("MASTER_ADDR=127.0.0.1");
    env_s.push_back("MASTER_PORT=" + std::to_string(master_port));
    env_s.push_back("RANK=" + std::to_string(r));
    env_s.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env_s.push_back("LOCAL_RANK=" + std::to_string(r));
    env_s.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    std::vector<char*> envp;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);

    int out = -1, pipe_fd[2] = {-1, -1};
    if (r > 0 && !log_dir.empty()) {
      std::string path = log_dir + "/rank_" + std::to_string(r) + ".log";
      out = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      TORCH_CHECK_VALUE(out >= 0, "--log-dir: cannot write ", path, ": ", std::strerror(errno));
    } else if (r > 0) {
      TORCH_CHECK(pipe2(pipe_fd, O_CLOEXEC) == 0, "launch: pipe failed: ", std::strerror(errno));
      out = pipe_fd[1];
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

    pid_t pid = fork();
    if (pid == 0) {
      // Child: only async-signal-safe calls until execve.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(kExitInternal);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      if (devnull >= 0) dup2(devnull, 0);
      if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
      }
      execve(exe.c_str(), argv.data(), envp.data());
      _exit(127);
    }
    if (devnull >= 0) close(devnull);
    if (out >= 0) close(out);
    if (pid < 0) {
      if (pipe_fd[0] >= 0) close(pipe_fd[0]);
      signal_alive(ws, SIGKILL);
      TORCH_CHECK(false, "launch: fork failed for rank ", r, ": ", std::strerror(errno));
    }
    w.pid = pid;
    w.out_fd = pipe_fd[0];
  }

  int alive = nproc;
  int reaped = 0;
  bool failed = false, forwarded = false;
  Clock::time_point failed_at, termed_at;
  bool termed = false, killed = false;
  int seen_signals = 0;
  while (alive > 0) {
    pump(ws, 100);
    if (g_signal_count != seen_signals) {
      seen_signals = g_signal_count;
      signal_alive(ws, g_pending_signal);
      forwarded = true;
    }
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (auto& w : ws) {
        if (w.pid != pid || w.exited) continue;
        w.exited = true;
        w.status = status;
        w.order = reaped++;
        --alive;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && !failed && !stopped_by_launcher(w.signaled_by_us, status)) {
          // The grace period starts here; which rank is named is decided when all have ended.
          failed = true;
          failed_at = Clock::now();
          if (alive > 0)
            std::fprintf(stderr,
                         "qsched launch: rank %d %s; stopping the other ranks (in %g s unless "
                         "they exit)\n",
                         w.rank, describe(status).c_str(), grace);
        }
      }
    }
    auto now = Clock::now();
    if (failed && alive > 0 && !termed &&
        std::chrono::duration<double>(now - failed_at).count() >= grace) {
      signal_alive(ws, SIGTERM);
      termed = true;
      termed_at = now;
    }
    if (termed && !killed && alive > 0 &&
        std::chrono::duration<double>(now - termed_at).count() >= 5) {
      signal_alive(ws, SIGKILL);
      killed = true;
    }
  }
  // Output written just before a worker exited.
  for (int i = 0; i < 50; ++i) {
    bool open_fd = false;
    for (auto& w : ws) open_fd |= w.out_fd >= 0;
    if (!open_fd) break;
    pump(ws, 100);
  }
  for (auto& w : ws)
    if (w.out_fd >= 0) {
      emit(w, "", 0, true);
      close(w.out_fd);
    }

  std::vector<WorkerEnd> ends;
  for (const auto& w : ws) ends.push_back({w.rank, w.status, w.order, w.signaled_by_us});
  const int first_failed = first_failure(ends);
  if (first_failed >= 0) {
    const Worker& w = ws[first_failed];
    std::fprintf(stderr, "qsched launch: error: rank %d of %d %s (first failure)\n", w.rank, nproc,
                 describe(w.status).c_str());
    int code = exit_code_of(w.status);
    return code == 0 ? kExitInternal : code;
  }
  if (forwarded) {
    for (const auto& w : ws)
      if (!(WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0)) return kExitInterrupted;
  }
  return kExitOk;
}

}  // namespace qsched::cli
