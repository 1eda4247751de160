#include "tests/util/raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>

namespace qsched::test {

namespace {
using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point end) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
  return ms <= 0 ? 0 : static_cast<int>(ms) + 1;
}
}  // namespace

int tcp_connect(const std::string& addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t r = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    sent += static_cast<size_t>(r);
  }
  return true;
}

bool recv_exact(int fd, size_t n, double seconds, std::string* out) {
  const auto end = Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  out->clear();
  char buf[4096];
  while (out->size() < n) {
    pollfd p{fd, POLLIN, 0};
    int pr = poll(&p, 1, ms_left(end));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return false;
    ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - out->size()), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    out->append(buf, static_cast<size_t>(r));
  }
  return true;
}

bool closed_within(int fd, double seconds) {
  const auto end = Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int pr = poll(&p, 1, ms_left(end));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return false;
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) return true;
  }
}

long long resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long long kb = 0;
      in >> kb;
      return kb * 1024;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

}  // namespace qsched::test
