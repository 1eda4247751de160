#include "inner/io.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace qsched {

namespace {

constexpr char kArchiveMagic[8] = {'Q', 'S', 'C', 'H', 'E', 'D', 'T', 'A'};
constexpr size_t kKindBytes = 24;

[[noreturn]] void io_fail(const std::string& msg) { throw IoError(msg); }

void put_le(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

}  // namespace

void atomic_write(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_fail("cannot write '" + tmp + "': " + std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      io_fail("write to '" + tmp + "' failed: " + std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  int err = 0;
  if (::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    io_fail("write to '" + tmp + "' failed: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    io_fail("cannot replace '" + path + "': " + std::strerror(err));
  }
  fs::path dir = fs::path(path).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  TORCH_CHECK_VALUE(!fs::is_directory(path, ec), "cannot read '", path, "': it is a directory");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK_VALUE(in.good(), "cannot read '", path, "'",
                    errno ? std::string(": ") + std::strerror(errno) : std::string());
  std::ostringstream ss;
  ss << in.rdbuf();
  TORCH_CHECK_VALUE(!in.bad(), "cannot read '", path, "': read error");
  return ss.str();
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    TORCH_CHECK_VALUE(fs::is_directory(path, ec), "cannot create directory '", path,
                      "': a file of that name exists");
    return;
  }
  fs::create_directories(path, ec);
  if (ec || !fs::is_directory(path)) {
    io_fail("cannot create directory '" + path +
            "': " + (ec ? ec.message() : std::string("it did not appear")));
  }
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::string one_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string s = ce ? ce->what_without_backtrace() : e.what();
  size_t nl = s.find('\n');
  if (nl != std::string::npos) s = s.substr(0, nl);
  return s;
}

uint32_t crc32_of(const void* data, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::string archive_bytes(torch::serialize::OutputArchive& a, const std::string& kind) {
  TORCH_INTERNAL_ASSERT(!kind.empty() && kind.size() <= kKindBytes, "archive kind '", kind, "'");
  std::ostringstream payload;
  a.save_to(payload);
  const std::string p = payload.str();
  std::string out(kArchiveMagic, kArchiveMagic + 8);
  put_le(out, kArchiveContainerVersion, 4);
  put_le(out, 0, 4);  // CRC, filled in below
  put_le(out, p.size(), 8);
  std::string k = kind;
  k.resize(kKindBytes, '\0');
  out += k;
  out += p;
  const uint32_t crc = crc32_of(out.data() + 16, out.size() - 16);
  for (int i = 0; i < 4; ++i) out[12 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  return out;
}

void write_archive(const std::string& path, torch::serialize::OutputArchive& a,
                   const std::string& kind) {
  atomic_write(path, archive_bytes(a, kind));
}

ArchiveReader::ArchiveReader(std::string path, std::string kind, std::string what,
                             c10::optional<torch::Device> device)
    : path_(std::move(path)), kind_(std::move(kind)), what_(std::move(what)) {
  if (!file_exists(path_)) fail("does not exist");
  std::string bytes;
  try {
    bytes = read_whole_file(path_);
  } catch (const c10::Error& e) {
    fail(std::string("cannot be read: ") + one_line(e));
  }
  open(bytes, device);
}

ArchiveReader::ArchiveReader(FromBytes in, std::string kind, std::string what,
                             c10::optional<torch::Device> device)
    : path_(std::move(in.name)), kind_(std::move(kind)), what_(std::move(what)) {
  open(in.bytes, device);
}

void ArchiveReader::fail(const std::string& why) const {
  TORCH_CHECK_VALUE(false, what_, " '", path_, "' ", why);
  std::abort();  // unreachable
}

void ArchiveReader::open(const std::string& b, c10::optional<torch::Device> device) {
  const size_t n = b.size();
  if (n >= 4 && b.compare(0, 4, "PK\x03\x04") == 0)
    fail(
        "was written by an older qsched (a bare torch archive without the integrity header); "
        "it cannot be verified: recreate it with this qsched");
  if (n < 8 || b.compare(0, 8, kArchiveMagic, 8) != 0)
    fail("is corrupt or not a qsched archive (bad magic; expected \"QSCHEDTA\")");
  if (n < kArchiveHeaderBytes)
    fail("is corrupt: truncated (" + std::to_string(n) + " bytes, shorter than the " +
         std::to_string(kArchiveHeaderBytes) + "-byte header)");
  const auto version = static_cast<uint32_t>(get_le(b.data() + 8, 4));
  if (version != kArchiveContainerVersion)
    fail("has container version " + std::to_string(version) + ", this qsched reads version " +
         std::to_string(kArchiveContainerVersion));
  const uint64_t payload = get_le(b.data() + 16, 8);
  if (payload != n - kArchiveHeaderBytes)
    fail("is corrupt: truncated or has trailing bytes (" + std::to_string(n) +
         " bytes; the header says " + std::to_string(kArchiveHeaderBytes) + " + " +
         std::to_string(payload) + ")");
  const auto stored = static_cast<uint32_t>(get_le(b.data() + 12, 4));
  const uint32_t crc = crc32_of(b.data() + 16, n - 16);
  if (crc != stored)
    fail("is corrupt (CRC-32 mismatch: stored " + hex32(stored) + ", computed " + hex32(crc) + ")");
  std::string kind(b.data() + 24, kKindBytes);
  kind = kind.substr(0, kind.find('\0'));
  if (kind != kind_)
    fail("holds a qsched " + (kind.empty() ? std::string("(unnamed)") : kind) + " archive, not a " +
         kind_);
  try {
    a_.load_from(b.data() + kArchiveHeaderBytes, static_cast<size_t>(payload), device);
  } catch (const std::exception& e) {
    fail("is not a readable torch archive (" + one_line(e) + ")");
  }
}

c10::IValue ArchiveReader::read(const char* key) {
  c10::IValue v;
  bool ok = false;
  try {
    ok = a_.try_read(key, v);
  } catch (const std::exception& e) {
    fail(std::string("has an unreadable '") + key + "' (" + one_line(e) + ")");
  }
  if (!ok) fail(std::string("lacks '") + key + "' (corrupt, or written by another version)");
  return v;
}

void ArchiveReader::check_version(int64_t expected) {
  const c10::IValue v = read("version");
  if (!v.isInt()) fail("has a non-integer 'version'");
  if (v.toInt() != expected)
    fail("has version " + std::to_string(v.toInt()) + ", this qsched reads version " +
         std::to_string(expected));
}

}  // namespace qsched
