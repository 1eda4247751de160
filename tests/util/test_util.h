#pragma once
// Helpers shared by all test binaries.
#include <torch/torch.h>

#include <string>

namespace qsched::test {

/// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Writes bytes to a file (creating parent dirs).
void write_file(const std::string& path, const std::string& bytes);
/// Reads a whole file.
std::string read_file(const std::string& path);

/// Flips one byte in the middle of the first tensor's data inside the torch archive (zip) of
/// `path` (a qsched archive: checkpoint.pt, meta_state.pt, controller.pt) and returns its offset.
/// Fails the test when the file holds no tensor data entry.
size_t flip_tensor_byte(const std::string& path);

/// A process id that no process has right now (for stale "<file>.tmp.<pid>" files).
long unused_pid();

/// Result of running the qsched binary.
struct RunResult {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr, interleaved
};
/// Runs `build/qsched <args>` through /bin/sh with a timeout; args are passed verbatim.
RunResult run_qsched(const std::string& args, int timeout_seconds = 300);
/// Runs a shell command (stdout and stderr captured); QSCHED in it names the binary.
RunResult run_shell(const std::string& command);
/// Path of the qsched binary under test.
std::string qsched_binary();

/// Number of '\n' in `s`.
int count_lines(const std::string& s);
/// A CLI bad-input result: exit code 2 and exactly one output line that mentions `needle`.
void expect_one_line_error(const RunResult& r, const std::string& needle);

/// Expects a c10::ValueError whose message contains `needle`.
#define EXPECT_VALUE_ERROR(stmt, needle)                                                 \
  do {                                                                                   \
    try {                                                                                \
      stmt;                                                                              \
      ADD_FAILURE() << "expected c10::ValueError containing '" << needle << "'";         \
    } catch (const c10::ValueError& e) {                                                 \
      EXPECT_NE(std::string(e.what_without_backtrace()).find(needle), std::string::npos) \
          << e.what_without_backtrace();                                                 \
    }                                                                                    \
  } while (0)

}  // namespace qsched::test
