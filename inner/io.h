#pragma once
// Durable, verified file input/output: nothing a run writes is ever half-written, and nothing
// it reads back is accepted unless it is exactly what was written.
//
// atomic_write(path, bytes): write to "<path>.tmp.<pid>", fsync the file, rename over `path`,
// fsync the directory. A reader sees either the old or the new content, also after a kill -9
// or a power loss at any point (a kill -9 can leave the temporary file behind; see
// inner/run_dir.h for how the next run removes it). Any failure is an IoError (below).
//
// Torch archives (run checkpoints, the meta-state, controller.pt) are written in a qsched
// container, because LibTorch's zip reader does not check the zip CRCs (flipped tensor bytes
// would load silently):
//
//   offset 0   char[8]   magic "QSCHEDTA"
//          8   u32       container version: 1 (= kArchiveContainerVersion)
//         12   u32       CRC-32 (zlib polynomial) of bytes [16, 48 + P)
//         16   u64       P = payload bytes (the file is exactly 48 + P bytes)
//         24   char[24]  kind, NUL-padded: "checkpoint" | "meta-state" | "controller"
//         48   P bytes   the torch archive (OutputArchive::save_to)
//
// (integers little-endian). ArchiveReader checks magic, version, size, CRC and kind before
// LibTorch sees a byte, and turns every failure, also one inside LibTorch, into one
// c10::ValueError line naming the file (exit code 2).
#include <torch/torch.h>

#include <string>

namespace qsched {

/// An I/O failure while writing (disk full, file too large, permission denied, a path
/// component that is a file, a failed rename): not bad input and not a bug. The CLI reports it
/// in one line with its own exit code (4, experiments/cli.h); what was written before stays
/// intact. A c10::Error, so generic handlers still catch it.
class IoError : public c10::Error {
 public:
  explicit IoError(const std::string& msg) : c10::Error(msg, "") {}
};

/// Atomically replaces `path` with `bytes` (see above). Throws IoError on failure (the
/// temporary file is removed).
void atomic_write(const std::string& path, const std::string& bytes);

/// Reads a whole file; throws c10::ValueError naming the path when it cannot be read.
std::string read_whole_file(const std::string& path);

/// Creates a directory and its parents. An existing non-directory at `path` is a
/// c10::ValueError; any other failure an IoError; both name the path.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

/// The message of any exception as one line (c10::Error without its backtrace; the first line).
std::string one_line(const std::exception& e);

constexpr uint32_t kArchiveContainerVersion = 1;
/// Size of the container header in bytes.
constexpr size_t kArchiveHeaderBytes = 48;

/// CRC-32 (zlib) of `n` bytes.
uint32_t crc32_of(const void* data, size_t n);

/// `a` serialized and wrapped in the container (see above) as `kind` (at most 24 characters).
std::string archive_bytes(torch::serialize::OutputArchive& a, const std::string& kind);
/// archive_bytes + atomic_write.
void write_archive(const std::string& path, torch::serialize::OutputArchive& a,
                   const std::string& kind);

/// A torch archive written by write_archive, verified and opened for reading. `kind` is the
/// container kind it must have; `what` names it in every error ("checkpoint", "meta
/// checkpoint"). A corrupt, truncated, foreign or older-format file, another kind, a missing
/// entry and a version mismatch are c10::ValueErrors naming the file.
class ArchiveReader {
 public:
  /// Reads and verifies the file `path`.
  ArchiveReader(std::string path, std::string kind, std::string what,
                c10::optional<torch::Device> device = c10::nullopt);
  /// Verifies container bytes that did not come from a file (e.g. received from another
  /// process); `name` stands for the file in errors.
  struct FromBytes {
    std::string bytes;
    std::string name;
  };
  ArchiveReader(FromBytes in, std::string kind, std::string what,
                c10::optional<torch::Device> device = c10::nullopt);

  /// Entry `key`, which must exist ("... lacks 'key' (corrupt, or written by another version)").
  c10::IValue read(const char* key);
  /// The "version" entry must equal `expected`.
  void check_version(int64_t expected);
  torch::serialize::InputArchive& archive() { return a_; }
  const std::string& path() const { return path_; }
  /// Throws the c10::ValueError "<what> '<path>' <why>".
  [[noreturn]] void fail(const std::string& why) const;

 private:
  void open(const std::string& bytes, c10::optional<torch::Device> device);

  std::string path_, kind_, what_;
  torch::serialize::InputArchive a_;
};

}  // namespace qsched
