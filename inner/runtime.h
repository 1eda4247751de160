#pragma once
// Process-wide runtime settings: BLAS detection, thread counts, devices, interruption.
#include <torch/torch.h>

#include <mutex>
#include <string>

#include "inner/base/stop.h"  // install_interrupt_handlers()

namespace qsched {

/// "openblas" when OpenBLAS is the BLAS that libtorch calls, else "reference" (the Netlib
/// reference BLAS that Debian's libtorch-dev pulls in by default: ~25x slower for an MLP).
std::string blas_backend();
/// The warning to print at start-up when the BLAS is not OpenBLAS ("" when it is).
std::string blas_warning();

/// Sets torch intra-op threads and OpenBLAS threads to `n` (>= 1). OpenBLAS threads plus
/// OpenMP threads oversubscribe small machines, so both are set to the same value and
/// inter-op threads to 1.
void set_threads(int n);

/// Parses "cpu", "cuda" or "cuda:K"; CUDA without a CUDA build or GPU is a c10::ValueError.
torch::Device parse_device(const std::string& s);

/// Transitional: interrupt_token().stop_requested() and set_interrupt_for_testing()
/// (inner/base/stop.h) for the callers that do not take a StopToken yet.
bool interrupted();
void set_interrupted(bool v);

/// Held by everything that touches torch's global generator (module construction runs the
/// default parameter init, torch::manual_seed): trainers and controllers are built concurrently
/// in worker threads (meta-training, compare), and an unguarded construction in one thread would
/// shift another thread's seeded initialization.
std::mutex& global_generator_mutex();

/// Exit code used after an interrupted run saved its checkpoint.
constexpr int kExitInterrupted = 130;

}  // namespace qsched
