#include "inner/base/stop.h"

#include <csignal>

namespace qsched {

namespace detail {
struct StopState {
  mutable std::atomic<bool> stopped{false};
  std::shared_ptr<const StopState> parent;
};
}  // namespace detail
using detail::StopState;

bool StopToken::stop_requested() const {
  for (const StopState* s = s_.get(); s; s = s->parent.get())
    if (s->stopped.load(std::memory_order_relaxed)) return true;
  return false;
}

StopSource::StopSource() : s_(std::make_shared<StopState>()) {}

StopSource::StopSource(const StopToken& parent) : s_(std::make_shared<StopState>()) {
  s_->parent = parent.s_;
}

void StopSource::request_stop() { s_->stopped.store(true); }

namespace {

// The root lives in static storage: the signal handler writes its lock-free atomic and nothing
// else (async-signal-safe), and it outlives every token.
StopState* interrupt_state() {
  static_assert(std::atomic<bool>::is_always_lock_free);
  static StopState root;
  return &root;
}

void on_signal(int sig) {
  if (interrupt_state()->stopped.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

StopToken interrupt_token() {
  static const std::shared_ptr<const StopState> root(interrupt_state(), [](const StopState*) {});
  return StopToken(root);
}

void set_interrupt_for_testing(bool stopped) { interrupt_state()->stopped.store(stopped); }

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  // Blocking reads (data, checkpoints, pipes) continue instead of failing with EINTR.
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace qsched
