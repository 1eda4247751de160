#pragma once
// Builders of tiny IDX / CIFAR-10 files for the datasets tests.
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/util/test_util.h"

namespace qsched::test {

/// Big-endian 32-bit integer, as IDX headers store them.
inline std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return s;
}

/// IDX image file bytes: magic 0x803, [n, rows, cols], pixel i = (i * 7 + salt) % 256.
inline std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, int salt = 0,
                              uint32_t magic = 0x00000803) {
  std::string s = be32(magic) + be32(n) + be32(rows) + be32(cols);
  const uint64_t count = uint64_t(n) * rows * cols;
  for (uint64_t i = 0; i < count; ++i) s.push_back(static_cast<char>((i * 7 + salt) % 256));
  return s;
}

/// IDX label file bytes: magic 0x801, [labels.size()].
inline std::string idx_labels(const std::vector<uint8_t>& labels, uint32_t magic = 0x00000801) {
  std::string s = be32(magic) + be32(static_cast<uint32_t>(labels.size()));
  for (uint8_t l : labels) s.push_back(static_cast<char>(l));
  return s;
}

/// Labels 0, 1, ..., k-1, 0, 1, ...
inline std::vector<uint8_t> cyclic_labels(size_t n, int k = 10) {
  std::vector<uint8_t> l(n);
  for (size_t i = 0; i < n; ++i) l[i] = static_cast<uint8_t>(i % k);
  return l;
}

/// gzip-compressed bytes (one member).
inline std::string gzip_bytes(const std::string& raw) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(zs.total_out);
  return out;
}

/// Writes `raw` to `path`, gzip-compressed when `gz`.
inline void write_maybe_gz(const std::string& path, const std::string& raw, bool gz) {
  write_file(path, gz ? gzip_bytes(raw) : raw);
}

/// An MNIST-layout directory with n_train/n_test images of rows x cols and cyclic labels.
inline void write_idx_dir(const std::string& dir, bool gz, uint32_t n_train = 30,
                          uint32_t n_test = 20, uint32_t rows = 4, uint32_t cols = 3) {
  const std::string ext = gz ? ".gz" : "";
  write_maybe_gz(dir + "/train-images-idx3-ubyte" + ext, idx_images(n_train, rows, cols, 1), gz);
  write_maybe_gz(dir + "/train-labels-idx1-ubyte" + ext, idx_labels(cyclic_labels(n_train)), gz);
  write_maybe_gz(dir + "/t10k-images-idx3-ubyte" + ext, idx_images(n_test, rows, cols, 2), gz);
  write_maybe_gz(dir + "/t10k-labels-idx1-ubyte" + ext, idx_labels(cyclic_labels(n_test)), gz);
}

/// CIFAR-10 binary records: label of record r is labels[r], pixel j of record r is (r + j) % 256.
inline std::string cifar_records(const std::vector<uint8_t>& labels) {
  std::string s;
  for (size_t r = 0; r < labels.size(); ++r) {
    s.push_back(static_cast<char>(labels[r]));
    for (int j = 0; j < 3072; ++j) s.push_back(static_cast<char>((r + j) % 256));
  }
  return s;
}

}  // namespace qsched::test
