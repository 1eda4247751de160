#include "meta/distributed.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "meta/store.h"

namespace qsched::meta {

namespace {

constexpr const char* kEnvNames[] = {"WORLD_SIZE",          "RANK",
                                     "MASTER_ADDR",         "MASTER_PORT",
                                     "QSCHED_DIST_TIMEOUT", "GLOO_SOCKET_IFNAME",
                                     "QSCHED_DIST_TOKEN"};

// The first line of an exception message (Gloo and c10d append source locations and
// backtraces on later lines).
std::string first_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string s = c10 ? c10->what_without_backtrace() : e.what();
  auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

// Strict decimal integer: optional '-', digits only, no overflow.
std::optional<int64_t> parse_int(const std::string& s) {
  if (s.empty() || s.size() > 12) return std::nullopt;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  for (size_t k = i; k < s.size(); ++k)
    if (s[k] < '0' || s[k] > '9') return std::nullopt;
  return std::stoll(s);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// The local address the kernel would use to reach `host` (a UDP connect sends nothing).
// Binding Gloo to it works across machines, unlike the hostname, which Debian maps to
// 127.0.1.1 in /etc/hosts.
std::string route_address(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  TORCH_CHECK_VALUE(rc == 0, "MASTER_ADDR=", host, " does not resolve (", gai_strerror(rc),
                    "). Violated constraint: MASTER_ADDR is a reachable host name or address");
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  std::string out;
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    char buf[INET_ADDRSTRLEN] = {0};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf)))
      out = buf;
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  TORCH_CHECK_VALUE(!out.empty(), "MASTER_ADDR=", host,
                    " has no route from this machine. Violated constraint: MASTER_ADDR is "
                    "reachable (or set GLOO_SOCKET_IFNAME)");
  return out;
}

// While alive, c10d's own log lines (glog: "E1127 ... socket.cpp:860] [c10d] The client socket
// has timed out ...", one per retry) are suppressed: the errors reach the user as exceptions
// with one line each, which the CLI prints.
class QuietC10dLogs {
 public:
  QuietC10dLogs() {
    std::lock_guard<std::mutex> lock(mutex());
    if (depth()++ == 0) {
      saved() = FLAGS_minloglevel;
      FLAGS_minloglevel = google::GLOG_FATAL;
    }
  }
  ~QuietC10dLogs() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--depth() == 0) FLAGS_minloglevel = saved();
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& depth() {
    static int d = 0;
    return d;
  }
  static int& saved() {
    static int s = 0;
    return s;
  }
};

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string from_bytes(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

class GlooCollective : public Collective {
 public:
  explicit GlooCollective(const DistributedOptions& o)
      : rank_(o.rank()),
        world_(o.world_size()),
        timeout_seconds_(o.timeout_seconds()),
        timeout_(std::chrono::milliseconds(std::llround(o.timeout_seconds() * 1000))) {
    const std::string where = o.master_addr() + ":" + std::to_string(o.master_port());
    QuietC10dLogs quiet;
    // Resolve the Gloo device first: a bad interface or address fails before any waiting.
    std::shared_ptr<::gloo::transport::Device> device;
    try {
      if (!o.interface().empty())
        device = c10d::ProcessGroupGloo::createDeviceForInterface(o.interface());
      else if (is_loopback(o.master_addr()))
        device = c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
      else
        device = c10d::ProcessGroupGloo::createDeviceForHostname(
            route_address(o.master_addr(), o.master_port()));
    } catch (const c10::ValueError&) {
      throw;
    } catch (const std::exception& e) {
      TORCH_CHECK_VALUE(false, "GLOO_SOCKET_IFNAME='", o.interface(),
                        "' cannot be used: ", first_line(e),
                        ". Violated constraint: an existing network interface of this machine");
    }

    // Rank 0 serves the store on MASTER_ADDR's address only; every rank (rank 0 too) is a
    // client that proves it knows the token.
    if (rank_ == 0) {
      try {
        server_ = std::make_unique<StoreServer>(o.master_addr(), o.master_port(), o.token());
      } catch (const c10::ValueError& e) {
        std::string m = first_line(e);
        if (m.rfind("cannot listen", 0) == 0)
          TORCH_CHECK_VALUE(false, "rank 0 cannot listen on MASTER_PORT=", o.master_port(), " (", m,
                            "). Violated constraint: a free port on MASTER_ADDR");
        throw;
      }
    }
    c10::intrusive_ptr<c10d::Store> tcp;
    try {
      tcp = c10::make_intrusive<StoreClient>(o.master_addr(), o.master_port(), o.token(), timeout_);
    } catch (const c10::ValueError& e) {
      TORCH_CHECK_VALUE(false, "rank ", rank_, ": ", first_line(e));
    } catch (const std::exception& e) {
      if (rank_ == 0)
        TORCH_CHECK_VALUE(false, "rendezvous at ", where, " failed: rank 0 cannot reach its own ",
                          "store (", first_line(e), ")");
      TORCH_CHECK_VALUE(false, "rank ", rank_,
                        " cannot reach the master at MASTER_ADDR:", "MASTER_PORT=", where,
                        " within ", timeout_seconds_, " s (", first_line(e), ")");
    }
    store_ = c10::make_intrusive<c10d::PrefixStore>("qsched", tcp);

    // Consistency checks through the store: one process per rank, one world size.
    try {
      int64_t n = store_->add("rank_claims/" + std::to_string(rank_), 1);
      TORCH_CHECK_VALUE(n == 1, "RANK=", rank_, " is used by more than one process. ",
                        "Violated constraint: every rank is unique");
      if (rank_ == 0) store_->set("world_size", to_bytes(std::to_string(world_)));
      std::string w = from_bytes(store_->get("world_size"));
      TORCH_CHECK_VALUE(w == std::to_string(world_), "WORLD_SIZE=", world_, " on rank ", rank_,
                        " but WORLD_SIZE=", w,
                        " on rank 0. Violated constraint: the same WORLD_SIZE on every rank");
    } catch (const c10::ValueError&) {
      throw;
    } catch (const std::exception& e) {
      TORCH_CHECK_VALUE(false, "rendezvous at ", where, " failed on rank ", rank_, ": ",
                        first_line(e), refused_note());
    }

    auto pgo = c10d::ProcessGroupGloo::Options::create(timeout_);
    pgo->devices.push_back(device);
    pgo->threads = 1;
    try {
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, rank_, world_, pgo);
    } catch (const std::exception& e) {
      TORCH_CHECK_VALUE(false, "rendezvous at ", where, " failed on rank ", rank_,
                        ": not all of WORLD_SIZE=", world_, " ranks connected within ",
                        timeout_seconds_, " s (", first_line(e), ")", refused_note());
    }
  }

  ~GlooCollective() override {
    // After a failed collective Gloo's pairs are in an error state and tearing the group down
    // may block on them; the process is about to report the error and exit, so let it go.
    if (broken_) {
      (void)pg_.release();
      (void)store_.release();
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  std::vector<std::vector<double>> allgather(const std::vector<double>& mine) override {
    // Gloo's allgather needs equal lengths: gather the lengths, then the padded values.
    auto len = torch::tensor({static_cast<int64_t>(mine.size())}, torch::kLong);
    auto lens = gather_tensor(len, "allgather");
    int64_t longest = 0;
    for (const auto& t : lens) longest = std::max(longest, t.item<int64_t>());
    std::vector<std::vector<double>> out(world_);
    if (longest == 0) return out;
    auto padded = torch::zeros({longest}, torch::kDouble);
    if (!mine.empty())
      std::memcpy(padded.data_ptr<double>(), mine.data(), mine.size() * sizeof(double));
    auto all = gather_tensor(padded, "allgather");
    for (int r = 0; r < world_; ++r) {
      int64_t n = lens[r].item<int64_t>();
      const double* p = all[r].data_ptr<double>();
      out[r].assign(p, p + n);
    }
    return out;
  }

  std::string broadcast(const std::string& bytes, int root) override {
    TORCH_CHECK_VALUE(root >= 0 && root < world_, "broadcast root = ", root,
                      ". Violated constraint: 0 <= root < world_size = ", world_);
    auto len =
        torch::tensor({static_cast<int64_t>(rank_ == root ? bytes.size() : 0)}, torch::kLong);
    broadcast_tensor(len, root);
    int64_t n = len.item<int64_t>();
    if (n == 0) return {};
    auto buf = torch::empty({n}, torch::kUInt8);
    if (rank_ == root) std::memcpy(buf.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    broadcast_tensor(buf, root);
    return std::string(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()), n);
  }

  void barrier() override {
    run("barrier", [&] { return pg_->barrier(); });
  }

  // A counter per round in rank 0's store (add is an atomic fetch-and-add on the server). Rank 0
  // drops the previous round's counter: every rank has passed a collective since its last claim of
  // that round.
  int64_t begin_work() override {
    ++round_;
    if (rank_ == 0 && round_ > 1 && !broken_) {
      std::lock_guard<std::mutex> lock(store_mutex_);
      try {
        store_->deleteKey(work_key(round_ - 1));
      } catch (const std::exception&) {
        // a failed store shows in the next claim or collective, with its message
      }
    }
    return round_;
  }

  int64_t claim(int64_t round) override {
    TORCH_CHECK(round == round_, "claim for work round ", round, " during round ", round_);
    std::lock_guard<std::mutex> lock(store_mutex_);  // one store client, several threads
    if (broken_)
      throw PeerFailure(c10::str("distributed work claim on rank ", rank_,
                                 ": the group failed in an earlier collective"));
    int64_t next = -1;
    try {
      next = store_->add(work_key(round), 1) - 1;
    } catch (const std::exception& e) {
      broken_ = true;
      throw PeerFailure(c10::str("distributed work claim failed on rank ", rank_, " of ", world_,
                                 ": the store on rank 0 is gone or did not answer within ",
                                 timeout_seconds_, " s (", first_line(e), ")"));
    }
    return next;
  }

 private:
  // On rank 0, why a rank may be missing: where its store listens (a MASTER_ADDR that rank 0
  // resolves to a loopback address cannot be reached from other machines), and connections
  // it turned away.
  std::string refused_note() const {
    if (!server_) return "";
    std::string s = "; rank 0's store listens on " + server_->bound_address() + ":" +
                    std::to_string(server_->port());
    if (server_->refused() > 0)
      s += c10::str(" and refused ", server_->refused(),
                    " connection(s) that did not prove QSCHED_DIST_TOKEN");
    return s;
  }

  template <class F>
  void run(const char* what, F start) {
    if (broken_)
      throw PeerFailure(c10::str("distributed ", what, " on rank ", rank_,
                                 ": the group failed in an earlier collective"));
    try {
      start()->wait();
    } catch (const std::exception& e) {
      broken_ = true;
      throw PeerFailure(c10::str("distributed ", what, " failed on rank ", rank_, " of ", world_,
                                 ": a peer exited or did not answer within ", timeout_seconds_,
                                 " s (", first_line(e), ")"));
    }
  }

  std::vector<at::Tensor> gather_tensor(const at::Tensor& t, const char* what) {
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_; ++r) out[0].push_back(torch::empty_like(t));
    std::vector<at::Tensor> in{t};
    run(what, [&] { return pg_->allgather(out, in); });
    return out[0];
  }

  void broadcast_tensor(at::Tensor& t, int root) {
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    run("broadcast", [&] { return pg_->broadcast(ts, bo); });
  }

  static std::string work_key(int64_t round) { return "work/" + std::to_string(round); }

  int rank_, world_;
  int64_t round_ = 0;
  std::mutex store_mutex_;
  double timeout_seconds_;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> broken_{false};
  std::unique_ptr<StoreServer> server_;  ///< rank 0 only; destroyed after the clients
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
};

}  // namespace

void DistributedOptions::validate() const {
  TORCH_CHECK_VALUE(world_size_ >= 1, "WORLD_SIZE=", world_size_,
                    ". Violated constraint: WORLD_SIZE >= 1");
  TORCH_CHECK_VALUE(rank_ >= 0 && rank_ < world_size_, "RANK=", rank_,
                    " with WORLD_SIZE=", world_size_,
                    ". Violated constraint: 0 <= RANK < WORLD_SIZE");
  if (world_size_ == 1) return;
  TORCH_CHECK_VALUE(!master_addr_.empty(),
                    "MASTER_ADDR is empty. Violated constraint: the host or address of rank 0");
  TORCH_CHECK_VALUE(master_port_ >= 1 && master_port_ <= 65535, "MASTER_PORT=", master_port_,
                    ". Violated constraint: 1 <= MASTER_PORT <= 65535");
  TORCH_CHECK_VALUE(
      std::isfinite(timeout_seconds_) && timeout_seconds_ > 0 && timeout_seconds_ <= 7 * 86400,
      "QSCHED_DIST_TIMEOUT=", timeout_seconds_,
      ". Violated constraint: 0 < QSCHED_DIST_TIMEOUT <= 604800 (seconds)");
  TORCH_CHECK_VALUE(!token_.empty(), "QSCHED_DIST_TOKEN is not set but WORLD_SIZE=", world_size_,
                    ". Violated constraint: every rank sets the same secret QSCHED_DIST_TOKEN "
                    "(qsched launch generates one; see qsched launch --help)");
  check_dist_token(token_);
}

void check_dist_token(const std::string& token) {
  TORCH_CHECK_VALUE(token.size() >= 16 && token.size() <= 1024, "QSCHED_DIST_TOKEN has ",
                    token.size(),
                    " characters. Violated constraint: 16 <= length <= 1024 (e.g. 32 random "
                    "hex digits)");
}

std::optional<DistributedOptions> distributed_options_from_env(
    const std::map<std::string, std::string>& env) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto integer = [&](const char* name, const std::string& v, const char* rule) {
    auto n = parse_int(v);
    TORCH_CHECK_VALUE(n.has_value() && *n >= INT32_MIN && *n <= INT32_MAX, name, "='", v,
                      "' is not an integer. Violated constraint: ", rule);
    return static_cast<int>(*n);
  };

  auto ws = get("WORLD_SIZE");
  auto rk = get("RANK");
  if (!ws) {
    TORCH_CHECK_VALUE(!rk, "RANK=", *rk,
                      " is set but WORLD_SIZE is not. Violated constraint: set both or "
                      "neither");
    return std::nullopt;
  }
  int world = integer("WORLD_SIZE", *ws, "WORLD_SIZE is an integer >= 1");
  TORCH_CHECK_VALUE(world >= 1, "WORLD_SIZE=", world, ". Violated constraint: WORLD_SIZE >= 1");
  if (world == 1) {
    if (rk) {
      int r = integer("RANK", *rk, "RANK is an integer, 0 <= RANK < WORLD_SIZE");
      TORCH_CHECK_VALUE(r == 0, "RANK=", r,
                        " with WORLD_SIZE=1. Violated constraint: 0 <= RANK < WORLD_SIZE");
    }
    return std::nullopt;
  }
  TORCH_CHECK_VALUE(rk, "RANK is not set but WORLD_SIZE=", world,
                    ". Violated constraint: every rank sets RANK (0 <= RANK < WORLD_SIZE)");
  int rank = integer("RANK", *rk, "RANK is an integer, 0 <= RANK < WORLD_SIZE");
  auto addr = get("MASTER_ADDR");
  TORCH_CHECK_VALUE(addr, "MASTER_ADDR is not set but WORLD_SIZE=", world,
                    ". Violated constraint: MASTER_ADDR names the host of rank 0");
  auto port = get("MASTER_PORT");
  TORCH_CHECK_VALUE(port, "MASTER_PORT is not set but WORLD_SIZE=", world,
                    ". Violated constraint: MASTER_PORT is rank 0's TCP port (1..65535)");
  DistributedOptions o(*addr, integer("MASTER_PORT", *port, "1 <= MASTER_PORT <= 65535"), rank,
                       world);
  if (auto t = get("QSCHED_DIST_TIMEOUT")) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(t->c_str(), &end);
    TORCH_CHECK_VALUE(!t->empty() && end && *end == '\0' && errno == 0, "QSCHED_DIST_TIMEOUT='", *t,
                      "' is not a number. Violated constraint: seconds, a number > 0");
    o.timeout_seconds(v);
  }
  if (auto i = get("GLOO_SOCKET_IFNAME")) o.interface(*i);
  if (auto t = get("QSCHED_DIST_TOKEN")) o.token(*t);
  o.validate();
  return o;
}

std::optional<DistributedOptions> distributed_options_from_env() {
  std::map<std::string, std::string> env;
  for (const char* name : kEnvNames)
    if (const char* v = std::getenv(name)) env[name] = v;
  return distributed_options_from_env(env);
}

std::unique_ptr<Collective> make_collective(const DistributedOptions& options) {
  options.validate();
  if (options.world_size() == 1) return std::make_unique<LocalCollective>();
  return std::make_unique<GlooCollective>(options);
}

int free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  TORCH_CHECK(fd >= 0, "socket() failed: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  int err = errno;
  close(fd);
  TORCH_CHECK(ok, "cannot find a free loopback port: ", std::strerror(err));
  return ntohs(a.sin_port);
}

std::unique_ptr<Collective> make_collective_from_env() {
  auto o = distributed_options_from_env();
  if (!o) return std::make_unique<LocalCollective>();
  return make_collective(*o);
}

}  // namespace qsched::meta
