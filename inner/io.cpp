#include "inner/io.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace qsched {

void atomic_write(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, "cannot write '", tmp, "': ", std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      TORCH_CHECK(false, "write to '", tmp, "' failed: ", std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  bool ok = ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    TORCH_CHECK(false, "cannot replace '", path, "': ", std::strerror(err));
  }
  fs::path dir = fs::path(path).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK_VALUE(in.good(), "cannot read '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  TORCH_CHECK_VALUE(!ec && fs::is_directory(path), "cannot create directory '", path,
                    "': ", ec ? ec.message() : "a file of that name exists");
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

ArchiveReader::ArchiveReader(std::string path, std::string what,
                             c10::optional<torch::Device> device)
    : path_(std::move(path)), what_(std::move(what)) {
  try {
    a_.load_from(path_, device);
  } catch (const c10::Error&) {
    TORCH_CHECK_VALUE(false, what_, " '", path_, "' is corrupt or not a qsched checkpoint");
  }
}

c10::IValue ArchiveReader::read(const char* key) {
  c10::IValue v;
  TORCH_CHECK_VALUE(a_.try_read(key, v), what_, " '", path_, "' lacks '", key,
                    "' (corrupt, or written by another version)");
  return v;
}

void ArchiveReader::check_version(int64_t expected) {
  const int64_t version = read("version").toInt();
  TORCH_CHECK_VALUE(version == expected, what_, " '", path_, "' has version ", version,
                    ", this qsched reads version ", expected);
}

}  // namespace qsched
