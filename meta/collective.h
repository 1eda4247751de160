#pragma once
// What the outer loop needs from a group of cooperating processes (ranks), and nothing more:
// ranks exchange only small vectors (integer seeds, fitness values) and every rank applies the
// identical controller update, so the controller stays bit-identical on every rank.
//
//   world size 1 : LocalCollective (no communication; the default)
//   world size N : the c10d / Gloo implementation (meta/distributed.h), rendezvous through a
//                  store (meta/store.h) from MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
//                  QSCHED_DIST_TOKEN
//
// Every call is collective: all ranks call it in the same order. A rank that dies makes the
// others fail within the group's timeout with a PeerFailure naming the operation (no hang).
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qsched::meta {

/// A collective or work claim failed because another rank exited or stopped answering: not a
/// bug of this process (the CLI reports it as an error with its own exit code, and the last
/// checkpoint resumes). A c10::Error, so generic handlers still catch it.
class PeerFailure : public c10::Error {
 public:
  explicit PeerFailure(const std::string& msg) : c10::Error(msg, "") {}
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Every rank passes a vector (lengths may differ); every rank gets all of them, indexed by
  /// rank. Values are copied bit-exactly (NaN included).
  virtual std::vector<std::vector<double>> allgather(const std::vector<double>& mine) = 0;
  /// Rank `root`'s bytes on every rank (e.g. a config or checkpoint digest).
  virtual std::string broadcast(const std::string& bytes, int root) = 0;
  virtual void barrier() = 0;

  /// Dynamic work sharing (ranks that finish early take the remaining work, as threads do).
  /// begin_work() opens a new round; every rank calls it the same number of times, in the same
  /// order as its collectives, and it does not communicate. claim(round) then hands out 0, 1,
  /// 2, ... of that round over all threads of all ranks, each number exactly once; the caller
  /// stops at the first number >= its item count. Thread-safe. A round's claims must be over
  /// (on every rank) before the next collective, which is what makes the next round safe.
  virtual int64_t begin_work() = 0;
  virtual int64_t claim(int64_t round) = 0;
};

/// World size 1: allgather returns {mine}, broadcast returns its argument.
class LocalCollective : public Collective {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::vector<std::vector<double>> allgather(const std::vector<double>& mine) override {
    return {mine};
  }
  std::string broadcast(const std::string& bytes, int) override { return bytes; }
  void barrier() override {}
  int64_t begin_work() override {
    next_ = 0;
    return ++round_;
  }
  int64_t claim(int64_t) override { return next_++; }

 private:
  int64_t round_ = 0;
  std::atomic<int64_t> next_{0};
};

}  // namespace qsched::meta
