#pragma once
// What the outer loop needs from a group of cooperating processes (ranks), and nothing more:
// ranks exchange only small vectors (integer seeds, fitness values) and every rank applies the
// identical controller update, so the controller stays bit-identical on every rank.
//
//   world size 1 : LocalCollective (no communication; the default)
//   world size N : the c10d / Gloo implementation (meta/distributed.h), rendezvous through a
//                  TCPStore from MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
//
// Every call is collective: all ranks call it in the same order. A rank that dies makes the
// others fail within the group's timeout with a c10::Error naming the operation (no hang).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qsched::meta {

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
};

}  // namespace qsched::meta
