#include "meta/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <thread>

#include "meta/sha256.h"

namespace qsched::meta {

namespace {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;  // nullopt: wait as long as it takes

constexpr char kMagic[] = "QSTORE01";  // 8 bytes on the wire, without the '\0'
constexpr size_t kMagicLen = 8;
constexpr size_t kNonceLen = 32;
constexpr char kClientLabel[] = "qsched store client";
constexpr char kServerLabel[] = "qsched store server";
constexpr uint8_t kAccept = 'A', kRefuse = 'R';

// Request types and reply statuses.
enum : uint8_t { kSet = 1, kGet, kAdd, kCheck, kWait, kDelete, kNumKeys };
enum : uint8_t { kOk = 0, kNo = 1, kTimedOut = 2, kError = 3 };

constexpr uint32_t kMaxKeysPerRequest = 1024;
constexpr uint32_t kMaxErrorBytes = 4096;
// Longest wait a client may ask for (a 0 or larger request is capped to it).
constexpr int64_t kMaxWaitMs = int64_t(7) * 86400 * 1000;

enum class Io { kOk, kClosed, kTimeout, kError };

const char* io_text(Io r, int err) {
  switch (r) {
    case Io::kClosed:
      return "connection closed";
    case Io::kTimeout:
      return "no answer in time";
    default:
      return std::strerror(err);
  }
}

// Milliseconds to `dl` for poll(): -1 without a deadline, 0 when it has passed.
int poll_ms(const Deadline& dl) {
  if (!dl) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*dl - Clock::now()).count();
  if (left <= 0) return 0;
  return left >= INT_MAX ? INT_MAX : static_cast<int>(left) + 1;
}

bool passed(const Deadline& dl) { return dl && Clock::now() >= *dl; }

// Reads exactly n bytes before the deadline. Data already received counts even when the
// deadline has passed (a descheduled reader is not the sender's fault).
Io read_exact(int fd, void* buf, size_t n, const Deadline& dl, int* err = nullptr) {
  auto* p = static_cast<char*>(buf);
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, p + got, n - got, MSG_DONTWAIT);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      if (err) *err = errno;
      return Io::kError;
    }
    if (passed(dl)) return Io::kTimeout;
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, poll_ms(dl)) < 0 && errno != EINTR) {
      if (err) *err = errno;
      return Io::kError;
    }
  }
  return Io::kOk;
}

Io write_all(int fd, const std::string& s, const Deadline& dl, int* err = nullptr) {
  size_t sent = 0;
  while (sent < s.size()) {
    ssize_t r = send(fd, s.data() + sent, s.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      sent += static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      if (err) *err = errno;
      return errno == EPIPE || errno == ECONNRESET ? Io::kClosed : Io::kError;
    }
    if (passed(dl)) return Io::kTimeout;
    pollfd pfd{fd, POLLOUT, 0};
    if (poll(&pfd, 1, poll_ms(dl)) < 0 && errno != EINTR) {
      if (err) *err = errno;
      return Io::kError;
    }
  }
  return Io::kOk;
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_i64(std::string& s, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int i = 7; i >= 0; --i) s += static_cast<char>((u >> (8 * i)) & 0xff);
}
void put_bytes(std::string& s, const std::string& b) {
  put_u32(s, static_cast<uint32_t>(b.size()));
  s += b;
}
uint32_t get_u32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
int64_t get_i64(const unsigned char* p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
  return static_cast<int64_t>(u);
}

std::string as_string(const Digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

Digest proof(const std::string& token, const char* label, const std::string& nonce_s,
             const std::string& nonce_c) {
  return hmac_sha256(token, std::string(label) + nonce_s + nonce_c);
}

// Strict decimal integer (the text ADD keeps).
std::optional<int64_t> parse_decimal(const std::string& s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  int64_t v = 0;
  for (size_t k = i; k < s.size(); ++k) {
    if (s[k] < '0' || s[k] > '9') return std::nullopt;
    int d = s[k] - '0';
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, i ? -d : d, &v))
      return std::nullopt;
  }
  return v;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(std::llround(seconds * 1000));
}

std::string addr_text(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
  return buf;
}

struct AddrInfo {
  addrinfo* list = nullptr;
  ~AddrInfo() {
    if (list) freeaddrinfo(list);
  }
};

void resolve(const std::string& host, int port, AddrInfo* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &out->list);
  TORCH_CHECK_VALUE(rc == 0 && out->list, "MASTER_ADDR=", host, " does not resolve (",
                    gai_strerror(rc),
                    "). Violated constraint: MASTER_ADDR is a reachable host name or address");
}

void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Server

void StoreServerOptions::validate() const {
  TORCH_CHECK_VALUE(handshake_seconds_ > 0 && handshake_seconds_ <= 3600,
                    "StoreServerOptions::handshake_seconds = ", handshake_seconds_,
                    ". Violated constraint: 0 < handshake_seconds <= 3600");
  TORCH_CHECK_VALUE(message_seconds_ > 0 && message_seconds_ <= 86400,
                    "StoreServerOptions::message_seconds = ", message_seconds_,
                    ". Violated constraint: 0 < message_seconds <= 86400");
  TORCH_CHECK_VALUE(max_key_bytes_ >= 1 && max_key_bytes_ <= (1 << 20),
                    "StoreServerOptions::max_key_bytes = ", max_key_bytes_,
                    ". Violated constraint: 1 <= max_key_bytes <= 2^20");
  TORCH_CHECK_VALUE(max_value_bytes_ >= 1 && max_value_bytes_ <= (int64_t(1) << 30),
                    "StoreServerOptions::max_value_bytes = ", max_value_bytes_,
                    ". Violated constraint: 1 <= max_value_bytes <= 2^30");
  TORCH_CHECK_VALUE(max_keys_ >= 1, "StoreServerOptions::max_keys = ", max_keys_,
                    ". Violated constraint: max_keys >= 1");
  TORCH_CHECK_VALUE(max_total_bytes_ >= 1,
                    "StoreServerOptions::max_total_bytes = ", max_total_bytes_,
                    ". Violated constraint: max_total_bytes >= 1");
  TORCH_CHECK_VALUE(max_pending_ >= 1, "StoreServerOptions::max_pending = ", max_pending_,
                    ". Violated constraint: max_pending >= 1");
  TORCH_CHECK_VALUE(max_clients_ >= 1, "StoreServerOptions::max_clients = ", max_clients_,
                    ". Violated constraint: max_clients >= 1");
}

struct StoreServer::Impl {
  struct Conn {
    int fd = -1;
    std::thread thread;
    bool done = false;  // fd closed; guarded by mu
  };

  StoreServerOptions opt;
  std::string token;
  int listen_fd = -1;
  int wake_fd = -1;
  int port = 0;
  std::string address;
  std::thread acceptor;

  std::mutex mu;
  std::condition_variable changed;  // a key was set or added, or stopping
  std::map<std::string, std::string> data;
  int64_t bytes = 0;  // keys + values held
  bool stopping = false;
  std::list<std::unique_ptr<Conn>> conns;
  int pending = 0, clients = 0;
  std::atomic<int64_t> refused{0}, dropped{0};

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
      for (auto& c : conns)
        if (!c->done) shutdown(c->fd, SHUT_RDWR);
    }
    changed.notify_all();
    uint64_t one = 1;
    if (wake_fd >= 0) (void)!write(wake_fd, &one, sizeof(one));
    if (acceptor.joinable()) acceptor.join();
    for (auto& c : conns)  // nobody adds to conns any more
      if (c->thread.joinable()) c->thread.join();
    if (listen_fd >= 0) close(listen_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  // Joins the threads of closed connections.
  void reap() {
    std::list<std::unique_ptr<Conn>> finished;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto it = conns.begin(); it != conns.end();)
        if ((*it)->done)
          finished.splice(finished.end(), conns, it++);
        else
          ++it;
    }
    for (auto& c : finished) c->thread.join();
  }

  void accept_loop() {
    for (;;) {
      pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents) return;
      if (!(p[0].revents & POLLIN)) continue;
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      reap();
      std::lock_guard<std::mutex> lock(mu);
      if (stopping || pending >= opt.max_pending() || clients >= opt.max_clients()) {
        close(fd);
        ++refused;
        continue;
      }
      no_delay(fd);
      conns.push_back(std::make_unique<Conn>());
      Conn* c = conns.back().get();
      c->fd = fd;
      ++pending;
      try {
        c->thread = std::thread([this, c] { serve(c); });
      } catch (const std::exception&) {
        --pending;
        close(fd);
        conns.pop_back();
      }
    }
  }

  void serve(Conn* c) {
    bool authed = false;
    try {
      authed = handshake(c->fd);
      if (authed) {
        while (handle(c->fd)) {
        }
      }
    } catch (const std::exception&) {
      // e.g. getrandom failed or out of memory: drop this connection only
    }
    std::lock_guard<std::mutex> lock(mu);
    if (authed)
      --clients;
    else
      --pending;
    close(c->fd);
    c->done = true;
  }

  // True when the client proved it knows the token (then it counts as a client).
  bool handshake(int fd) {
    const Deadline dl = Clock::now() + to_ms(opt.handshake_seconds());
    const std::string nonce_s = random_bytes(kNonceLen);
    if (write_all(fd, std::string(kMagic, kMagicLen) + nonce_s, dl) != Io::kOk) {
      ++refused;
      return false;
    }
    unsigned char in[kMagicLen + kNonceLen + 32];
    if (read_exact(fd, in, sizeof(in), dl) != Io::kOk || std::memcmp(in, kMagic, kMagicLen) != 0) {
      ++refused;
      return false;
    }
    const std::string nonce_c(reinterpret_cast<const char*>(in) + kMagicLen, kNonceLen);
    Digest got;
    std::memcpy(got.data(), in + kMagicLen + kNonceLen, got.size());
    if (!digest_equal(got, proof(token, kClientLabel, nonce_s, nonce_c))) {
      (void)write_all(fd, std::string(1, static_cast<char>(kRefuse)), dl);
      ++refused;
      return false;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping || clients >= opt.max_clients()) {
        ++refused;
        return false;
      }
      --pending;
      ++clients;
    }
    std::string reply(1, static_cast<char>(kAccept));
    reply += as_string(proof(token, kServerLabel, nonce_s, nonce_c));
    if (write_all(fd, reply, dl) != Io::kOk) {
      std::lock_guard<std::mutex> lock(mu);
      --clients;
      ++pending;  // serve() undoes the pending count
      return false;
    }
    return true;
  }

  // Reads a u32 length (at most `limit`) and that many bytes. False: the connection goes.
  bool read_field(int fd, const Deadline& dl, int64_t limit, std::string* out) {
    unsigned char len[4];
    if (read_exact(fd, len, 4, dl) != Io::kOk) return false;
    uint32_t n = get_u32(len);
    if (static_cast<int64_t>(n) > limit) return false;  // before allocating anything
    out->resize(n);
    return n == 0 || read_exact(fd, out->data(), n, dl) == Io::kOk;
  }

  bool read_keys(int fd, const Deadline& dl, std::vector<std::string>* keys) {
    unsigned char cnt[4];
    if (read_exact(fd, cnt, 4, dl) != Io::kOk) return false;
    uint32_t n = get_u32(cnt);
    if (n > kMaxKeysPerRequest) return false;
    keys->resize(n);
    for (auto& k : *keys)
      if (!read_field(fd, dl, opt.max_key_bytes(), &k)) return false;
    return true;
  }

  static std::string reply(uint8_t status, const std::string& payload = "") {
    std::string r(1, static_cast<char>(status));
    put_bytes(r, payload);
    return r;
  }

  // Stores key=value within the limits (mu held); "" or the ERROR text.
  std::string put(const std::string& key, std::string value) {
    auto it = data.find(key);
    const int64_t old = it == data.end() ? 0 : int64_t(key.size() + it->second.size());
    const int64_t now = int64_t(key.size() + value.size());
    if (it == data.end() && static_cast<int64_t>(data.size()) >= opt.max_keys())
      return "rank 0's store is full: it holds " + std::to_string(data.size()) + " keys (at most " +
             std::to_string(opt.max_keys()) + ")";
    if (bytes - old + now > opt.max_total_bytes())
      return "rank 0's store is full: " + std::to_string(bytes) + " bytes held (at most " +
             std::to_string(opt.max_total_bytes()) + ")";
    bytes += now - old;
    if (it == data.end())
      data.emplace(key, std::move(value));
    else
      it->second = std::move(value);
    changed.notify_all();
    return "";
  }

  // One request; false closes the connection (the client went away, broke the protocol or
  // was too slow).
  bool handle(int fd) {
    uint8_t type = 0;
    if (read_exact(fd, &type, 1, std::nullopt) != Io::kOk) return false;
    const Deadline dl = Clock::now() + to_ms(opt.message_seconds());
    std::string key, value, out;
    std::vector<std::string> keys;
    auto drop = [&] {
      ++dropped;
      return false;
    };
    switch (type) {
      case kSet: {
        if (!read_field(fd, dl, opt.max_key_bytes(), &key) ||
            !read_field(fd, dl, opt.max_value_bytes(), &value))
          return drop();
        std::lock_guard<std::mutex> lock(mu);
        std::string err = put(key, std::move(value));
        out = err.empty() ? reply(kOk) : reply(kError, err);
        break;
      }
      case kGet: {
        if (!read_field(fd, dl, opt.max_key_bytes(), &key)) return drop();
        std::lock_guard<std::mutex> lock(mu);
        auto it = data.find(key);
        out = it == data.end() ? reply(kNo) : reply(kOk, it->second);
        break;
      }
      case kAdd: {
        unsigned char d[8];
        if (!read_field(fd, dl, opt.max_key_bytes(), &key) || read_exact(fd, d, 8, dl) != Io::kOk)
          return drop();
        const int64_t delta = get_i64(d);
        std::lock_guard<std::mutex> lock(mu);
        int64_t v = 0;
        auto it = data.find(key);
        if (it != data.end()) {
          auto parsed = parse_decimal(it->second);
          if (!parsed) {
            out = reply(kError, "ADD on key '" + key + "', whose value is not an integer");
            break;
          }
          v = *parsed;
        }
        if (__builtin_add_overflow(v, delta, &v)) {
          out = reply(kError, "ADD on key '" + key + "' overflows int64");
          break;
        }
        std::string err = put(key, std::to_string(v));
        if (err.empty()) {
          std::string p;
          put_i64(p, v);
          out = reply(kOk, p);
        } else {
          out = reply(kError, err);
        }
        break;
      }
      case kCheck: {
        if (!read_keys(fd, dl, &keys)) return drop();
        std::lock_guard<std::mutex> lock(mu);
        bool all = true;
        for (const auto& k : keys) all = all && data.count(k) > 0;
        out = reply(all ? kOk : kNo);
        break;
      }
      case kWait: {
        unsigned char d[8];
        if (!read_keys(fd, dl, &keys) || read_exact(fd, d, 8, dl) != Io::kOk) return drop();
        int64_t ms = get_i64(d);
        if (ms <= 0 || ms > kMaxWaitMs) ms = kMaxWaitMs;
        std::unique_lock<std::mutex> lock(mu);
        bool ok = changed.wait_for(lock, std::chrono::milliseconds(ms), [&] {
          if (stopping) return true;
          for (const auto& k : keys)
            if (!data.count(k)) return false;
          return true;
        });
        if (stopping) return false;
        out = reply(ok ? kOk : kTimedOut);
        break;
      }
      case kDelete: {
        if (!read_field(fd, dl, opt.max_key_bytes(), &key)) return drop();
        std::lock_guard<std::mutex> lock(mu);
        auto it = data.find(key);
        if (it == data.end()) {
          out = reply(kNo);
        } else {
          bytes -= int64_t(it->first.size() + it->second.size());
          data.erase(it);
          out = reply(kOk);
        }
        break;
      }
      case kNumKeys: {
        std::lock_guard<std::mutex> lock(mu);
        std::string p;
        put_i64(p, static_cast<int64_t>(data.size()));
        out = reply(kOk, p);
        break;
      }
      default:
        return drop();
    }
    Io w = write_all(fd, out, Clock::now() + to_ms(opt.message_seconds()));
    if (w == Io::kTimeout) ++dropped;
    return w == Io::kOk;
  }
};

StoreServer::StoreServer(const std::string& host, int port, std::string token,
                         StoreServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  options.validate();
  TORCH_CHECK_VALUE(port >= 0 && port <= 65535, "store port ", port,
                    ". Violated constraint: 0 <= port <= 65535");
  TORCH_CHECK_VALUE(!token.empty(), "the store needs a non-empty token");
  impl_->opt = options;
  impl_->token = std::move(token);
  AddrInfo ai;
  resolve(host, port, &ai);
  const addrinfo* a = ai.list;
  const std::string numeric = addr_text(a->ai_addr);
  int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  TORCH_CHECK(fd >= 0, "socket() failed: ", std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    TORCH_CHECK_VALUE(err != EADDRNOTAVAIL, "MASTER_ADDR=", host, " (", numeric,
                      ") is not an address of this machine. Violated constraint: rank 0 runs "
                      "on the host MASTER_ADDR names");
    TORCH_CHECK_VALUE(false, "cannot listen on ", numeric, ":", port, " (", std::strerror(err),
                      ")");
  }
  impl_->listen_fd = fd;
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  impl_->address = addr_text(reinterpret_cast<sockaddr*>(&bound));
  impl_->port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  impl_->wake_fd = eventfd(0, EFD_CLOEXEC);
  TORCH_CHECK(impl_->wake_fd >= 0, "eventfd() failed: ", std::strerror(errno));
  impl_->acceptor = std::thread([impl = impl_.get()] { impl->accept_loop(); });
}

StoreServer::~StoreServer() = default;

int StoreServer::port() const { return impl_->port; }
std::string StoreServer::bound_address() const { return impl_->address; }
int64_t StoreServer::refused() const { return impl_->refused.load(); }
int64_t StoreServer::dropped() const { return impl_->dropped.load(); }

// ---------------------------------------------------------------------------------------
// Client

namespace {

// Non-blocking connect bounded by `dl`; the socket or -1 (errno set).
int connect_until(const addrinfo* a, const Deadline& dl) {
  int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
    pollfd pfd{fd, POLLOUT, 0};
    int pr;
    do {
      pr = poll(&pfd, 1, poll_ms(dl));
    } while (pr < 0 && errno == EINTR);
    int err = ETIMEDOUT;
    socklen_t len = sizeof(err);
    if (pr > 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close(fd);
      errno = err;
      return -1;
    }
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  no_delay(fd);
  return fd;
}

}  // namespace

StoreClient::StoreClient(const std::string& host, int port, std::string token,
                         std::chrono::milliseconds timeout)
    : c10d::Store(timeout) {
  TORCH_CHECK_VALUE(!token.empty(), "the store needs a non-empty token");
  where_ = host + ":" + std::to_string(port);
  const Deadline dl = Clock::now() + timeout;
  AddrInfo ai;
  resolve(host, port, &ai);
  std::string last = "no answer";
  for (;;) {
    for (const addrinfo* a = ai.list; a; a = a->ai_next) {
      // One attempt may take at most 5 s, so an address that swallows packets does not use up
      // the whole timeout.
      Deadline attempt = std::min(*dl, Clock::now() + std::chrono::seconds(5));
      int fd = connect_until(a, attempt);
      if (fd < 0) {
        last = std::strerror(errno);
        continue;
      }
      int err = 0;
      unsigned char hello[kMagicLen + kNonceLen];
      Io r = read_exact(fd, hello, sizeof(hello), dl, &err);
      if (r != Io::kOk) {  // e.g. the server is at its connection limit: try again
        last = std::string("handshake: ") + io_text(r, err);
        close(fd);
        continue;
      }
      if (std::memcmp(hello, kMagic, kMagicLen) != 0) {
        close(fd);
        TORCH_CHECK_VALUE(false, "the server at ", where_,
                          " is not a qsched store (it answered something else). Violated "
                          "constraint: MASTER_ADDR:MASTER_PORT is rank 0's store");
      }
      const std::string nonce_s(reinterpret_cast<const char*>(hello) + kMagicLen, kNonceLen);
      const std::string nonce_c = random_bytes(kNonceLen);
      std::string msg(kMagic, kMagicLen);
      msg += nonce_c;
      msg += as_string(proof(token, kClientLabel, nonce_s, nonce_c));
      unsigned char verdict = 0;
      r = write_all(fd, msg, dl, &err);
      if (r == Io::kOk) r = read_exact(fd, &verdict, 1, dl, &err);
      if (r != Io::kOk) {
        last = std::string("handshake: ") + io_text(r, err);
        close(fd);
        continue;
      }
      if (verdict != kAccept) {
        close(fd);
        TORCH_CHECK_VALUE(false, "rank 0's store at ", where_,
                          " refused this process's QSCHED_DIST_TOKEN. Violated constraint: the "
                          "same QSCHED_DIST_TOKEN on every rank");
      }
      Digest server_proof;
      r = read_exact(fd, server_proof.data(), server_proof.size(), dl, &err);
      if (r != Io::kOk) {
        last = std::string("handshake: ") + io_text(r, err);
        close(fd);
        continue;
      }
      if (!digest_equal(server_proof, proof(token, kServerLabel, nonce_s, nonce_c))) {
        close(fd);
        TORCH_CHECK_VALUE(false, "the store at ", where_,
                          " accepted the handshake without proving it knows QSCHED_DIST_TOKEN. "
                          "Violated constraint: MASTER_ADDR:MASTER_PORT is rank 0's store with "
                          "the same QSCHED_DIST_TOKEN");
      }
      fd_ = fd;
      return;
    }
    TORCH_CHECK(!passed(dl), "no qsched store answered at ", where_, " (", last, ")");
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(100), *dl - Clock::now()));
  }
}

StoreClient::~StoreClient() {
  if (fd_ >= 0) close(fd_);
}

std::string StoreClient::request(uint8_t type, const std::string& body,
                                 std::chrono::milliseconds wait, uint8_t* status) {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(!broken_, "the connection to rank 0's store at ", where_,
              " failed in an earlier request");
  const Deadline dl = Clock::now() + wait;
  std::string msg(1, static_cast<char>(type));
  msg += body;
  int err = 0;
  Io r = write_all(fd_, msg, dl, &err);
  unsigned char head[5];
  if (r == Io::kOk) r = read_exact(fd_, head, 5, dl, &err);
  std::string payload;
  if (r == Io::kOk) {
    const uint32_t n = get_u32(head + 1);
    if (n > StoreServerOptions().max_value_bytes() + kMaxErrorBytes || head[0] > kError) {
      broken_ = true;
      TORCH_CHECK(false, "rank 0's store at ", where_, " sent a malformed reply");
    }
    payload.resize(n);
    if (n > 0) r = read_exact(fd_, payload.data(), n, dl, &err);
  }
  if (r != Io::kOk) {
    broken_ = true;
    TORCH_CHECK(false, "rank 0's store at ", where_, ": ", io_text(r, err),
                r == Io::kTimeout ? " within " + std::to_string(wait.count() / 1000.0) + " s"
                                  : std::string());
  }
  *status = head[0];
  TORCH_CHECK(head[0] != kError, "rank 0's store at ", where_, ": ", payload);
  return payload;
}

namespace {

void check_key(const std::string& key) {
  TORCH_CHECK(static_cast<int64_t>(key.size()) <= StoreServerOptions().max_key_bytes(),
              "store key of ", key.size(), " bytes; at most ",
              StoreServerOptions().max_key_bytes());
}

std::string encode_keys(const std::vector<std::string>& keys) {
  TORCH_CHECK(keys.size() <= kMaxKeysPerRequest, "store request with ", keys.size(),
              " keys; at most ", kMaxKeysPerRequest);
  std::string b;
  put_u32(b, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) {
    check_key(k);
    put_bytes(b, k);
  }
  return b;
}

// A reply's i64 payload.
int64_t as_i64(const std::string& p) {
  TORCH_CHECK(p.size() == 8, "rank 0's store sent a malformed number");
  return get_i64(reinterpret_cast<const unsigned char*>(p.data()));
}

// A WAIT's reply comes when the server's wait ends; this much longer the client waits for it
// (the server may be slow to send on a loaded machine) before it counts the server as gone.
// Other requests are answered at once by a live server and may take the store's timeout.
constexpr auto kReplyMargin = std::chrono::seconds(30);

}  // namespace

void StoreClient::set(const std::string& key, const std::vector<uint8_t>& value) {
  check_key(key);
  TORCH_CHECK(static_cast<int64_t>(value.size()) <= StoreServerOptions().max_value_bytes(),
              "store value of ", value.size(), " bytes for key '", key, "'; at most ",
              StoreServerOptions().max_value_bytes());
  std::string b;
  put_bytes(b, key);
  put_bytes(b, std::string(value.begin(), value.end()));
  uint8_t st;
  request(kSet, b, timeout_, &st);
}

std::vector<uint8_t> StoreClient::get(const std::string& key) {
  wait({key}, timeout_);
  std::string b;
  check_key(key);
  put_bytes(b, key);
  uint8_t st;
  std::string v = request(kGet, b, timeout_, &st);
  TORCH_CHECK(st == kOk, "store key '", key, "' disappeared after it was set");
  return {v.begin(), v.end()};
}

int64_t StoreClient::add(const std::string& key, int64_t value) {
  check_key(key);
  std::string b;
  put_bytes(b, key);
  put_i64(b, value);
  uint8_t st;
  return as_i64(request(kAdd, b, timeout_, &st));
}

bool StoreClient::deleteKey(const std::string& key) {
  check_key(key);
  std::string b;
  put_bytes(b, key);
  uint8_t st;
  request(kDelete, b, timeout_, &st);
  return st == kOk;
}

bool StoreClient::check(const std::vector<std::string>& keys) {
  uint8_t st;
  request(kCheck, encode_keys(keys), timeout_, &st);
  return st == kOk;
}

int64_t StoreClient::getNumKeys() {
  uint8_t st;
  return as_i64(request(kNumKeys, "", timeout_, &st));
}

void StoreClient::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void StoreClient::wait(const std::vector<std::string>& keys,
                       const std::chrono::milliseconds& timeout) {
  std::string b = encode_keys(keys);
  int64_t ms = timeout.count() <= 0 ? kMaxWaitMs : std::min<int64_t>(timeout.count(), kMaxWaitMs);
  put_i64(b, ms);
  uint8_t st;
  request(kWait, b,
          std::chrono::milliseconds(ms) +
              std::chrono::duration_cast<std::chrono::milliseconds>(kReplyMargin),
          &st);
  TORCH_CHECK(st == kOk, "waited ", ms / 1000.0, " s for store key '",
              keys.empty() ? std::string() : keys[0], "'", keys.size() > 1 ? " and others" : "",
              ": not set (a rank did not join in time)");
}

}  // namespace qsched::meta
