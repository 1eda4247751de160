#pragma once
// Plain TCP client sockets for tests that speak to a server the way a stranger on the network
// would (meta/store.h): half-sent messages, wrong handshakes, connections that say nothing.
#include <string>

namespace qsched::test {

/// A TCP connection to IPv4 `addr`:`port`, or -1 (errno set) when it cannot be made.
int tcp_connect(const std::string& addr, int port);
/// Sends all of `bytes` (blocking); false on error.
bool send_all(int fd, const std::string& bytes);
/// Reads exactly `n` bytes within `seconds`; false on EOF, error or timeout.
bool recv_exact(int fd, size_t n, double seconds, std::string* out);
/// True when the peer closes the connection (EOF or reset) within `seconds`, discarding any
/// bytes that arrive before.
bool closed_within(int fd, double seconds);
/// Resident memory of this process in bytes (VmRSS).
long long resident_bytes();

}  // namespace qsched::test
