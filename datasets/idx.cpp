// IDX reader (MNIST, Fashion-MNIST): raw or gzip-compressed, detected by content.
//
// Sizes are never trusted: a raw file's payload is checked against its size before anything is
// allocated; a gzip file's payload is decompressed into a buffer that grows only as data
// actually arrives (capped at the size the header declares), so a corrupt header cannot make
// the loader allocate or wait for more than the file really holds.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/detail.h"

namespace fs = std::filesystem;

namespace qsched::data {

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dims
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dim
constexpr uint32_t kMaxSide = 1u << 15;        // rows/cols limit (keeps N*rows*cols < 2^62)
constexpr const char* kWhat = "IDX file";

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

/// Sequential reader of a raw or gzip-compressed (possibly multi-member) file.
class ByteStream {
 public:
  explicit ByteStream(std::string path) : path_(std::move(path)) {
    detail::require_regular_file(path_, kWhat);
    file_size_ = detail::file_size_checked(path_, kWhat);
    errno = 0;
    f_.reset(std::fopen(path_.c_str(), "rb"));
    TORCH_CHECK_VALUE(f_ != nullptr, kWhat, " '", path_, "': cannot open: ", std::strerror(errno));
    uint8_t magic[2] = {0, 0};
    const size_t n = std::fread(magic, 1, 2, f_.get());
    gzip_ = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    std::rewind(f_.get());
    if (gzip_) {
      in_.resize(1 << 18);
      std::memset(&zs_, 0, sizeof zs_);
      TORCH_CHECK_VALUE(inflateInit2(&zs_, 15 + 16) == Z_OK, kWhat, " '", path_,
                        "': cannot initialize zlib");
      zs_open_ = true;
    }
  }
  ~ByteStream() {
    if (zs_open_) inflateEnd(&zs_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  const std::string& path() const { return path_; }
  bool gzip() const { return gzip_; }
  uint64_t file_size() const { return file_size_; }
  /// True when a gzip file ends in the middle of a compressed stream.
  bool cut_off() const { return cut_off_; }

  /// Reads up to n bytes (decompressed); fewer only at the end of the data.
  size_t read(uint8_t* dst, size_t n) { return gzip_ ? read_gzip(dst, n) : read_raw(dst, n); }

 private:
  size_t read_raw(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      const size_t r = std::fread(dst + got, 1, n - got, f_.get());
      if (r == 0) {
        TORCH_CHECK_VALUE(!std::ferror(f_.get()), kWhat, " '", path_, "': read error");
        break;
      }
      got += r;
    }
    return got;
  }

  void refill() {
    const size_t r = std::fread(in_.data(), 1, in_.size(), f_.get());
    if (r == 0) {
      TORCH_CHECK_VALUE(!std::ferror(f_.get()), kWhat, " '", path_, "': read error");
      eof_ = true;
    }
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<uInt>(r);
  }

  size_t read_gzip(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      if (zs_.avail_in == 0 && !eof_) refill();
      if (zs_.avail_in == 0 && eof_) {
        cut_off_ = !member_done_;
        break;
      }
      if (member_done_) {  // another gzip member follows (as `cat a.gz b.gz` produces)
        inflateReset(&zs_);
        member_done_ = false;
      }
      const uInt chunk = static_cast<uInt>(std::min<size_t>(n - got, 1u << 30));
      zs_.next_out = dst + got;
      zs_.avail_out = chunk;
      const uInt in_before = zs_.avail_in;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      const size_t produced = chunk - zs_.avail_out;
      got += produced;
      if (rc == Z_STREAM_END) {
        member_done_ = true;
      } else if (rc == Z_BUF_ERROR) {
        // No progress possible without more input; anything else would loop forever.
        TORCH_CHECK_VALUE(zs_.avail_in == 0 || produced > 0 || zs_.avail_in != in_before, kWhat,
                          " '", path_, "': corrupt gzip data (inflate made no progress)");
      } else {
        TORCH_CHECK_VALUE(rc == Z_OK, kWhat, " '", path_,
                          "': corrupt gzip data: ", zs_.msg ? zs_.msg : "inflate error",
                          " (zlib code ", rc, ")");
      }
    }
    return got;
  }

  std::string path_;
  std::unique_ptr<FILE, int (*)(FILE*)> f_{nullptr, &std::fclose};
  uint64_t file_size_ = 0;
  bool gzip_ = false;
  z_stream zs_;
  bool zs_open_ = false;
  std::vector<uint8_t> in_;
  bool eof_ = false;
  bool member_done_ = false;
  bool cut_off_ = false;
};

/// Where a byte count comes from, for messages: "the file has" or "decompressed data has".
std::string found_desc(const ByteStream& s, uint64_t found) {
  if (!s.gzip()) return "found " + std::to_string(found) + " bytes";
  std::string out = "found " + std::to_string(found) + " bytes after decompression";
  if (s.cut_off()) out += " (the gzip stream is cut off)";
  return out;
}

/// One opened IDX file after its header was read and checked.
struct IdxHeader {
  uint32_t count = 0;
  uint32_t rows = 1, cols = 1;
  size_t header_bytes = 0;
  uint64_t payload_bytes() const { return uint64_t(count) * rows * cols; }
};

IdxHeader read_header(ByteStream& s, bool images) {
  const uint32_t expected_magic = images ? kImagesMagic : kLabelsMagic;
  const size_t header_bytes = images ? 16 : 8;
  uint8_t h[16];
  const size_t got = s.read(h, header_bytes);
  if (got >= 4) {
    const uint32_t magic = big_endian32(h);
    TORCH_CHECK_VALUE(magic == expected_magic, kWhat, " '", s.path(),
                      "': wrong magic number: expected ", hex32(expected_magic),
                      images ? " (uint8 images, 3 dims)" : " (uint8 labels, 1 dim)", ", found ",
                      hex32(magic),
                      magic == kImagesMagic   ? " (an IDX image file)"
                      : magic == kLabelsMagic ? " (an IDX label file)"
                                              : "");
  }
  TORCH_CHECK_VALUE(got == header_bytes, kWhat, " '", s.path(), "': truncated header: expected ",
                    header_bytes, " bytes, ", found_desc(s, got));
  IdxHeader hdr;
  hdr.header_bytes = header_bytes;
  hdr.count = big_endian32(h + 4);
  const char* items = images ? "images" : "labels";
  TORCH_CHECK_VALUE(hdr.count != 0, kWhat, " '", s.path(),
                    "': zero samples (the header declares 0 ", items,
                    "); a dataset needs at least one");
  TORCH_CHECK_VALUE(hdr.count <= 0x7fffffffu, kWhat, " '", s.path(), "': bad dims: ", items,
                    " count ", hdr.count, " exceeds the IDX limit 2^31-1");
  if (images) {
    hdr.rows = big_endian32(h + 8);
    hdr.cols = big_endian32(h + 12);
    TORCH_CHECK_VALUE(
        hdr.rows >= 1 && hdr.rows <= kMaxSide && hdr.cols >= 1 && hdr.cols <= kMaxSide, kWhat, " '",
        s.path(), "': bad dims: images are ", hdr.rows, "x", hdr.cols,
        ", rows and cols must be in [1, ", kMaxSide, "]");
  }
  return hdr;
}

/// Reads the payload the header declares, exactly: fewer bytes (truncation) or more bytes
/// (trailing data) are errors.
torch::Tensor read_payload(ByteStream& s, const IdxHeader& hdr, const std::string& declared) {
  const uint64_t want = hdr.payload_bytes();
  const uint64_t want_total = want + hdr.header_bytes;
  if (!s.gzip()) {  // the size is known: check it before allocating
    TORCH_CHECK_VALUE(s.file_size() >= want_total, kWhat, " '", s.path(),
                      "': truncated file: expected ", want_total, " bytes (", hdr.header_bytes,
                      "-byte header + ", declared, "), ", found_desc(s, s.file_size()));
    TORCH_CHECK_VALUE(s.file_size() == want_total, kWhat, " '", s.path(),
                      "': ", s.file_size() - want_total, " unexpected trailing bytes after the ",
                      want_total, " bytes the header declares (", declared, ")");
  }
  // Grow as data arrives: start at <= 64 MiB, double, never beyond the declared size.
  int64_t capacity = static_cast<int64_t>(std::min<uint64_t>(want, uint64_t(64) << 20));
  torch::Tensor buf = torch::empty({capacity}, torch::kUInt8);
  uint64_t have = 0;
  while (have < want) {
    if (int64_t(have) == capacity) {
      capacity = static_cast<int64_t>(std::min<uint64_t>(want, uint64_t(capacity) * 2));
      torch::Tensor bigger = torch::empty({capacity}, torch::kUInt8);
      std::memcpy(bigger.data_ptr<uint8_t>(), buf.data_ptr<uint8_t>(), have);
      buf = bigger;
    }
    const size_t ask = static_cast<size_t>(capacity - int64_t(have));
    const size_t got = s.read(buf.data_ptr<uint8_t>() + have, ask);
    have += got;
    if (got < ask) break;
  }
  TORCH_CHECK_VALUE(have == want, kWhat, " '", s.path(), "': truncated file: expected ", want_total,
                    " bytes (", hdr.header_bytes, "-byte header + ", declared, "), ",
                    found_desc(s, have + hdr.header_bytes));
  uint8_t extra;
  TORCH_CHECK_VALUE(s.read(&extra, 1) == 0, kWhat, " '", s.path(), "': unexpected data after the ",
                    want_total, " bytes the header declares (", declared, ")");
  TORCH_CHECK_VALUE(!s.cut_off(), kWhat, " '", s.path(), "': truncated gzip stream: all ",
                    want_total, " bytes are there but the stream ends before its trailer (CRC)");
  return buf;
}

/// `root` exists and is a directory, else a message pointing at the Debian package.
void require_idx_dir(const std::string& root) {
  std::error_code ec;
  auto st = fs::status(root, ec);
  TORCH_CHECK_VALUE(fs::exists(st), "dataset directory '", root,
                    "' does not exist; for Fashion-MNIST install the Debian package "
                    "`dataset-fashion-mnist` (it provides /usr/share/datasets/fashion-mnist)");
  TORCH_CHECK_VALUE(fs::is_directory(st), "dataset directory '", root, "' is not a directory");
}

/// `root/base` or `root/base.gz`; the raw file wins when both exist (it loads faster).
std::string pick_file(const std::string& root, const std::string& base) {
  const std::string raw = (fs::path(root) / base).string();
  const std::string gz = raw + ".gz";
  std::error_code ec;
  if (fs::exists(raw, ec)) return raw;
  if (fs::exists(gz, ec)) return gz;
  TORCH_CHECK_VALUE(false, "dataset directory '", root, "': missing file: neither '", gz, "' nor '",
                    raw, "' exists");
  return {};
}

/// "fashion-mnist" for "/usr/share/datasets/fashion-mnist/".
std::string dir_name(const std::string& root) {
  fs::path p = fs::path(root).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::string name = p.filename().string();
  return name.empty() || name == "." ? "idx" : name;
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes) {
  TORCH_CHECK_VALUE(num_classes >= 1, "load_idx: num_classes = ", num_classes, " must be >= 1");
  ByteStream images(images_path);
  const IdxHeader ih = read_header(images, true);
  ByteStream labels(labels_path);
  const IdxHeader lh = read_header(labels, false);
  TORCH_CHECK_VALUE(ih.count == lh.count, "IDX files '", images_path, "' and '", labels_path,
                    "': image/label count mismatch: ", ih.count, " images but ", lh.count,
                    " labels");
  const int64_t n = ih.count, rows = ih.rows, cols = ih.cols;

  torch::Tensor label_bytes = read_payload(labels, lh, std::to_string(n) + " labels");
  const int64_t max_label = label_bytes.max().item<int64_t>();
  if (max_label >= num_classes) {
    const int64_t at = (label_bytes >= num_classes).nonzero()[0][0].item<int64_t>();
    TORCH_CHECK_VALUE(false, kWhat, " '", labels_path, "': label ", label_bytes[at].item<int64_t>(),
                      " at index ", at, " is out of range; labels must be in [0, ", num_classes,
                      ")");
  }
  torch::Tensor pixel_bytes = read_payload(
      images, ih,
      std::to_string(n) + " images of " + std::to_string(rows) + "x" + std::to_string(cols));

  Dataset d;
  d.images = pixel_bytes.view({n, 1, rows, cols}).to(torch::kFloat).div_(255.0);
  d.labels = label_bytes.to(torch::kLong);
  d.num_classes = num_classes;
  d.name = images_path;
  return d;
}

Splits load_idx_dir(const std::string& root) {
  require_idx_dir(root);
  // Find all four files first, so a missing one is reported before anything is loaded.
  const std::string train_images = pick_file(root, "train-images-idx3-ubyte");
  const std::string train_labels = pick_file(root, "train-labels-idx1-ubyte");
  const std::string test_images = pick_file(root, "t10k-images-idx3-ubyte");
  const std::string test_labels = pick_file(root, "t10k-labels-idx1-ubyte");
  Splits s;
  s.train = load_idx(train_images, train_labels);
  s.test = load_idx(test_images, test_labels);
  TORCH_CHECK_VALUE(s.train.images.sizes().slice(1) == s.test.images.sizes().slice(1),
                    "dataset directory '", root, "': bad dims: test images '", test_images,
                    "' are ", s.test.images.sizes().slice(2), " but train images are ",
                    s.train.images.sizes().slice(2));
  const std::string name = dir_name(root);
  s.train.name = name + "/train";
  s.test.name = name + "/test";
  return s;
}

}  // namespace qsched::data
