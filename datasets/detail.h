#pragma once
// Internal helpers shared by the datasets/*.cpp files (not part of the public API).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "datasets/dataset.h"

namespace qsched::data::detail {

/// Salts of derive_seed, one per consumer, so that the random streams stay independent.
inline constexpr uint64_t kSaltSynthetic = 0x53594e5448455449ULL;  // "SYNTHETI"
inline constexpr uint64_t kSaltSplit = 0x53504c4954564c31ULL;      // "SPLITVL1"
inline constexpr uint64_t kSaltSubset = 0x5355425345543031ULL;     // "SUBSET01"
inline constexpr uint64_t kSaltBatcher = 0x4241544348455231ULL;    // "BATCHER1"

/// A private CPU generator. The global generator is never used, so results depend only on the
/// seeds passed in. Note: the mt19937 engine uses only the low 32 bits of its seed, so callers
/// pass seeds that went through derive_seed (whose mixing spreads all 64 input bits).
inline at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

/// Throws a one-line c10::ValueError unless `path` names an existing regular file.
/// `what` prefixes the message, e.g. "IDX file".
void require_regular_file(const std::string& path, const std::string& what);

/// Size in bytes of an existing regular file (ValueError when it cannot be determined).
uint64_t file_size_checked(const std::string& path, const std::string& what);

/// Checks that `d` is a well-formed dataset (images [N,...] float, labels int64 [N],
/// num_classes >= 1); `fn` names the calling function in the message.
void check_dataset(const Dataset& d, const char* fn);

}  // namespace qsched::data::detail
