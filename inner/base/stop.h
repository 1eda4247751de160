#pragma once
// Cooperative stopping: who may stop a long loop is whoever holds its StopSource; the loop
// only sees a StopToken, polled at safe points (a training step, an ES member, a sweep run).
//
//   StopSource src(interrupt_token());      // stops on Ctrl-C/SIGTERM, or on request
//   run_jobs(n, {.stop = src.token()}, f);  // workers poll the token between steps
//   src.request_stop();                     // e.g. one job failed: stop the others
//
// Tokens form a chain: a source made from a parent token reports a stop when it or any
// ancestor was asked to stop. Stopping never travels down-to-up (stopping a sweep's workers
// does not mark the process as interrupted). Copies of tokens and sources share state.
//
// The process root, interrupt_token(), is set by SIGINT/SIGTERM once install_interrupt_handlers()
// ran (a second signal restores the default action, so a double Ctrl-C kills at once). Nothing
// else in qsched reads a global stop flag: code that can be stopped takes a token.
#include <atomic>
#include <memory>

namespace qsched {

namespace detail {
struct StopState;  // a flag and the parent's state (stop.cpp)
}

class StopToken {
 public:
  /// A token that is never stopped.
  StopToken() = default;
  /// True when this token's source or any ancestor requested a stop.
  bool stop_requested() const;

 private:
  friend class StopSource;
  friend StopToken interrupt_token();
  explicit StopToken(std::shared_ptr<const detail::StopState> s) : s_(std::move(s)) {}
  std::shared_ptr<const detail::StopState> s_;
};

class StopSource {
 public:
  /// An independent source (no parent).
  StopSource();
  /// Stops when `parent` stops, or when request_stop() is called here.
  explicit StopSource(const StopToken& parent);
  void request_stop();
  bool stop_requested() const { return token().stop_requested(); }
  StopToken token() const { return StopToken(s_); }

 private:
  std::shared_ptr<detail::StopState> s_;
};

/// The process's interrupt token (SIGINT/SIGTERM after install_interrupt_handlers()).
StopToken interrupt_token();
/// Routes SIGINT/SIGTERM to interrupt_token(). Idempotent.
void install_interrupt_handlers();
/// For tests: sets or clears the process's interrupt state as a signal would (clearing is
/// what no real signal does; tests clear it after simulating a Ctrl-C).
void set_interrupt_for_testing(bool stopped);

}  // namespace qsched
