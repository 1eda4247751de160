#pragma once
// qsched's rendezvous store: a c10d::Store (what ProcessGroupGloo and the work counters of
// meta/distributed.h use) served by rank 0 over TCP, bound to one address and closed to
// clients that do not know the shared secret (QSCHED_DIST_TOKEN). It replaces c10d::TCPStore,
// which in LibTorch 1.13 listens on every interface, has no authentication and reads a whole
// message of any announced length on its one server thread.
//
//   rank 0: StoreServer ── listens on MASTER_ADDR's first resolved address only
//              ^  ^
//   rank r:    StoreClient (rank 0 too) ── one TCP connection, one request at a time
//
// Handshake (every connection; the token itself never crosses the network):
//   server -> client  "QSTORE01" nonce_s (32 random bytes)
//   client -> server  "QSTORE01" nonce_c (32 random bytes)
//                     HMAC-SHA-256(token, "qsched store client" nonce_s nonce_c)
//   server -> client  'A' HMAC-SHA-256(token, "qsched store server" nonce_s nonce_c)
//                     or 'R' and close (wrong token; compared in constant time)
// The client checks the server's HMAC too, so a process squatting on MASTER_PORT without the
// token cannot hand out Gloo addresses or work numbers. Before the 'A' nothing a client sends
// is read as a request, so a client without the token cannot read or change any key.
//
// Requests (after the handshake; integers big-endian; key/value = u32 length + bytes):
//   SET key value | GET key | ADD key i64 | CHECK u32 n, n keys | WAIT u32 n, n keys, i64 ms |
//   DELETE key | NUM_KEYS
// Reply: u8 status (OK, NO = missing/false, TIMEOUT, ERROR + u32 length + text) + payload.
// Limits (StoreServerOptions): key and value lengths are checked before anything is
// allocated, the number of keys and the bytes held are bounded (a SET beyond them is an ERROR
// reply), an unknown request type or an over-long length closes the connection. Each
// connection has its own thread, so a slow or silent client stalls nobody else; a handshake
// must finish, and a request once begun must arrive completely, within a few seconds or the
// connection is closed. Not protected: the traffic itself (no encryption or per-message MAC;
// someone who can inject into an established TCP connection, or the Gloo connections, can
// still disturb a run) and availability (anyone who reaches the port can open connections up
// to the limit). See the README's threat model.
#include <torch/arg.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <vector>

namespace qsched::meta {

struct StoreServerOptions {
  /// Seconds an unauthenticated connection has to complete the handshake.
  TORCH_ARG(double, handshake_seconds) = 10;
  /// Seconds a request has to arrive completely once its first byte has arrived (and a reply
  /// to be taken by the client); an idle authenticated connection may wait forever.
  TORCH_ARG(double, message_seconds) = 10;
  /// Longest key, bytes.
  TORCH_ARG(int64_t, max_key_bytes) = 4096;
  /// Longest value, bytes (Gloo's address record of one rank is ~100 bytes per peer).
  TORCH_ARG(int64_t, max_value_bytes) = int64_t(1) << 20;
  /// Most keys held at once.
  TORCH_ARG(int64_t, max_keys) = 65536;
  /// Most bytes (keys + values) held at once.
  TORCH_ARG(int64_t, max_total_bytes) = int64_t(64) << 20;
  /// Most connections still in the handshake; more are closed at once.
  TORCH_ARG(int, max_pending) = 64;
  /// Most authenticated connections (one per rank is needed).
  TORCH_ARG(int, max_clients) = 1024;

 public:
  /// Throws c10::ValueError naming the field, its value and the rule.
  void validate() const;
};

/// The server side: a thread that accepts connections plus one thread per connection. Keys
/// and values are bytes; ADD keeps the number as decimal text (as c10d::TCPStore does).
class StoreServer {
 public:
  /// Binds to the first address `host` resolves to (IPv4 or IPv6) and `port` (0 = the kernel
  /// picks one; see port()) and starts serving. c10::ValueError when `host` does not resolve,
  /// is not an address of this machine, or the port is taken ("cannot listen on port P").
  StoreServer(const std::string& host, int port, std::string token,
              StoreServerOptions options = {});
  /// Closes every connection and joins every thread.
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  /// The port listened on.
  int port() const;
  /// The address listened on, numeric ("127.0.0.1"), from getsockname.
  std::string bound_address() const;
  /// Handshakes refused so far (wrong token, malformed or too slow).
  int64_t refused() const;
  /// Connections closed for a protocol violation after the handshake (unknown request type,
  /// length over the limit, request not completed in time).
  int64_t dropped() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// The client side: a c10d::Store over one connection to a StoreServer. Thread-safe (one
/// request at a time). Errors are c10::Error with one line; a wrong token is a c10::ValueError.
/// After a timeout or a broken connection every later call fails at once.
class StoreClient : public c10d::Store {
 public:
  /// Connects to `host`:`port` (retrying while nobody listens there yet) and runs the
  /// handshake, within `timeout`. Throws c10::ValueError when the server refuses the token or
  /// cannot prove it knows it, c10::Error when no server answers within the timeout.
  /// `timeout` also bounds every later request (get/wait wait at most that long for a key).
  StoreClient(const std::string& host, int port, std::string token,
              std::chrono::milliseconds timeout);
  ~StoreClient() override;

  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  /// Waits for the key (at most the timeout), then returns its value.
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t value) override;
  bool deleteKey(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  int64_t getNumKeys() override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  std::string request(uint8_t type, const std::string& body, std::chrono::milliseconds deadline,
                      uint8_t* status);
  std::mutex mutex_;
  int fd_ = -1;
  bool broken_ = false;
  std::string where_;
};

}  // namespace qsched::meta
