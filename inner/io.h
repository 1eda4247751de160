#pragma once
// Durable file output: nothing a run writes is ever half-written.
//
// atomic_write(path, bytes): write to "<path>.tmp.<pid>", fsync the file, rename over `path`,
// fsync the directory. A reader sees either the old or the new content, also after a kill -9
// or a power loss at any point.
#include <torch/torch.h>

#include <string>

namespace qsched {

/// Atomically replaces `path` with `bytes` (see above). Throws c10::Error on I/O failure.
void atomic_write(const std::string& path, const std::string& bytes);

/// Reads a whole file; throws c10::ValueError naming the path when it cannot be read.
std::string read_whole_file(const std::string& path);

/// Creates a directory and its parents; error names the path.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

/// A torch archive written by qsched (a run checkpoint, the meta-state), opened for reading.
/// `what` names it in every error ("checkpoint", "meta checkpoint"); a corrupt or foreign file,
/// a missing entry and a version mismatch are c10::ValueErrors naming the path.
class ArchiveReader {
 public:
  ArchiveReader(std::string path, std::string what,
                c10::optional<torch::Device> device = c10::nullopt);
  /// Entry `key`, which must exist ("... lacks 'key' (corrupt, or written by another version)").
  c10::IValue read(const char* key);
  /// The "version" entry must equal `expected`.
  void check_version(int64_t expected);
  torch::serialize::InputArchive& archive() { return a_; }

 private:
  std::string path_, what_;
  torch::serialize::InputArchive a_;
};

}  // namespace qsched
