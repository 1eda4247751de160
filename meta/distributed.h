#pragma once
// Collective over several processes (and machines) with PyTorch's own distributed engine:
// qsched's authenticated store (meta/store.h, a c10d::Store) for the rendezvous and the work
// counters, c10d::ProcessGroupGloo for the data (CPU, TCP).
//
//            rank 0                                  rank 1 .. N-1
//   StoreServer on MASTER_ADDR:MASTER_PORT  <--  StoreClients (retry until the timeout;
//   (that address only, token handshake)          every rank proves QSCHED_DIST_TOKEN)
//        \___________ Gloo full mesh (one TCP pair per pair of ranks) ___________/
//
// The launch variables are the ones torchrun sets, plus the shared secret:
//
//   WORLD_SIZE   number of ranks (unset or 1: no communication, LocalCollective)
//   RANK         0 .. WORLD_SIZE-1, unique; rank 0 hosts the store
//   MASTER_ADDR  address of rank 0 that every rank reaches; rank 0's store listens on the
//                first address it resolves to and nowhere else (127.0.0.1: this machine
//                only; several machines: rank 0's address on the network they share)
//   MASTER_PORT  TCP port rank 0 listens on (1..65535)
//   QSCHED_DIST_TOKEN  required when WORLD_SIZE > 1: the same secret on every rank, 16..1024
//                characters (qsched launch generates 128 random bits); a connection that
//                cannot prove it knows it (HMAC challenge-response, meta/store.h) is refused
//                before it can read or change anything
//   QSCHED_DIST_TIMEOUT  optional, seconds (default 600): bound on the rendezvous and on
//                        every collective; also the longest time a rank may wait for a slow
//                        peer, so it must exceed the slowest inner evaluation of one step
//   GLOO_SOCKET_IFNAME   optional network interface for Gloo's connections (e.g. eth0);
//                        default: loopback when MASTER_ADDR is loopback, else the local
//                        address the kernel routes to MASTER_ADDR
//
// Failure behaviour (every failure is a c10::Error with one line naming the cause):
//   bad or missing variables            c10::ValueError before any connection is attempted
//   wrong QSCHED_DIST_TOKEN             c10::ValueError on that rank as soon as rank 0's
//                                       store refuses it; the others see a missing rank
//   MASTER_ADDR not of rank 0's host    c10::ValueError on rank 0 at once
//   master unreachable, port taken,     c10::ValueError after at most the timeout
//   ranks missing, RANK used twice,
//   WORLD_SIZE differs between ranks
//   a peer dies during a collective     c10::Error at once (its TCP connections close)
//   a peer hangs                        c10::Error after the timeout
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "meta/collective.h"

namespace qsched::meta {

struct DistributedOptions {
  DistributedOptions(std::string master_addr, int master_port, int rank, int world_size)
      : master_addr_(std::move(master_addr)),
        master_port_(master_port),
        rank_(rank),
        world_size_(world_size) {}
  /// Host name or address of rank 0 (MASTER_ADDR).
  TORCH_ARG(std::string, master_addr);
  /// TCP port of rank 0's store, 1..65535 (MASTER_PORT).
  TORCH_ARG(int, master_port);
  /// This process's rank, 0 <= rank < world_size (RANK).
  TORCH_ARG(int, rank);
  /// Number of processes, >= 1 (WORLD_SIZE).
  TORCH_ARG(int, world_size);
  /// Seconds; bound on the rendezvous and on each collective (QSCHED_DIST_TIMEOUT).
  TORCH_ARG(double, timeout_seconds) = 600;
  /// Network interface for Gloo, "" = automatic (see the top of this file; GLOO_SOCKET_IFNAME).
  TORCH_ARG(std::string, interface) = "";
  /// Shared secret of the group (QSCHED_DIST_TOKEN); required when world_size > 1.
  TORCH_ARG(std::string, token) = "";

 public:  // (TORCH_ARG leaves the section private)
  /// Throws c10::ValueError naming the field, its value and the rule.
  void validate() const;
};

/// Reads the launch variables from `env` (name -> value; a missing name is unset).
/// std::nullopt when WORLD_SIZE is unset or 1 (then RANK, if set, must be 0); otherwise the
/// validated options. Bad values throw c10::ValueError with one line, e.g.
/// "RANK=3 with WORLD_SIZE=2. Violated constraint: 0 <= RANK < WORLD_SIZE".
std::optional<DistributedOptions> distributed_options_from_env(
    const std::map<std::string, std::string>& env);
/// The same for this process's environment.
std::optional<DistributedOptions> distributed_options_from_env();

/// Joins the group described by `options` (blocks until every rank has joined, at most the
/// timeout) and returns the Gloo collective. options.world_size() == 1 gives LocalCollective.
std::unique_ptr<Collective> make_collective(const DistributedOptions& options);
/// make_collective(options from the environment), or LocalCollective when WORLD_SIZE is unset
/// or 1.
std::unique_ptr<Collective> make_collective_from_env();

/// Throws c10::ValueError unless `token` is a usable QSCHED_DIST_TOKEN (16..1024 characters).
/// The message gives its length, never the token.
void check_dist_token(const std::string& token);

/// A TCP port that is free on 127.0.0.1 right now (the kernel picks it; the socket is closed
/// again, so another program may take it before it is used: rank 0 then fails clearly).
int free_loopback_port();

}  // namespace qsched::meta
