#pragma once
// Progress display for long loops: a one-line bar with ETA on a terminal (stderr is a TTY),
// plain log lines otherwise (CI logs, files).
//
//   Progress p("train", total_units);
//   p.update(done_units, "loss 0.42");     // throttled: redraws at most ~5 times a second
//   p.line("epoch 3/10 ...");              // a permanent line (clears the bar first)
//   p.finish();
#include <chrono>
#include <cstdint>
#include <string>

namespace qsched {

class Progress {
 public:
  /// `enabled` false silences the bar (not line()).
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  void update(int64_t done, const std::string& status = "");
  void line(const std::string& text);
  void finish();
  /// Seconds since construction.
  double elapsed() const;
  bool is_tty() const { return tty_; }

 private:
  void clear();
  std::string label_;
  int64_t total_;
  bool enabled_, tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

/// "1m05s", "3.2s", "2h10m".
std::string format_duration(double seconds);

}  // namespace qsched
