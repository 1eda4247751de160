#include "tests/util/test_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace qsched::test {

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / ("qsched_test_" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("TempDir: cannot create a temp directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t flip_tensor_byte(const std::string& path) {
  std::string b = read_file(path);
  auto le = [&](size_t at, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
    return v;
  };
  // The zip's central directory ("PK\1\2" records: compressed size at +20, name length at +28,
  // extra and comment lengths at +30 and +32, local header offset at +42, name at +46) locates
  // the tensor entries ".../data/<k>"; their data follows the local header ("PK\3\4", name
  // length at +26, extra length at +28, name at +30). Offsets count from the zip's start.
  const size_t zip = b.find("PK\x03\x04");
  for (size_t pos = b.find("PK\x01\x02");
       zip != std::string::npos && pos != std::string::npos && pos + 46 <= b.size();
       pos = b.find("PK\x01\x02", pos + 4)) {
    const size_t size = le(pos + 20, 4), name_len = le(pos + 28, 2);
    const size_t local = zip + le(pos + 42, 4);
    if (pos + 46 + name_len > b.size() || local + 30 > b.size()) continue;
    const std::string name = b.substr(pos + 46, name_len);
    if (name.find("/data/") == std::string::npos || size == 0) continue;
    const size_t at = local + 30 + le(local + 26, 2) + le(local + 28, 2) + size / 2;
    if (at >= b.size()) continue;
    b[at] = static_cast<char>(b[at] ^ 0x5a);
    write_file(path, b);
    return at;
  }
  ADD_FAILURE() << path << " holds no tensor data entry";
  return 0;
}

long unused_pid() {
  long pid_max = 32768;
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  for (long pid = pid_max - 1; pid > 300; --pid)
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return pid;
  ADD_FAILURE() << "no unused pid";
  return -1;
}

std::string qsched_binary() { return QSCHED_BINARY; }

RunResult run_qsched(const std::string& args, int timeout_seconds) {
  return run_shell("timeout " + std::to_string(timeout_seconds) + " " + QSCHED_BINARY + " " + args);
}

RunResult run_shell(const std::string& command) {
  std::string cmd = "{ " + command + " ; } 2>&1";
  RunResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
}

}  // namespace qsched::test
