// CIFAR-10 binary reader: records of 1 label byte + 3072 pixel bytes (3x32x32, channel-major).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/detail.h"

namespace fs = std::filesystem;

namespace qsched::data {

namespace {

constexpr int64_t kPixels = 3 * 32 * 32;
constexpr int64_t kRecord = 1 + kPixels;
constexpr int64_t kClasses = 10;
constexpr const char* kWhat = "CIFAR-10 file";

/// Reads exactly `n` bytes of `path` into `dst`.
void read_exact(const std::string& path, uint8_t* dst, uint64_t n) {
  errno = 0;
  FILE* f = std::fopen(path.c_str(), "rb");
  TORCH_CHECK_VALUE(f != nullptr, kWhat, " '", path, "': cannot open: ", std::strerror(errno));
  uint64_t got = 0;
  while (got < n) {
    const size_t r = std::fread(dst + got, 1, static_cast<size_t>(n - got), f);
    if (r == 0) break;
    got += r;
  }
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  TORCH_CHECK_VALUE(!error, kWhat, " '", path, "': read error");
  TORCH_CHECK_VALUE(got == n, kWhat, " '", path, "': truncated file: expected ", n,
                    " bytes, found ", got, " (did the file change while loading?)");
}

}  // namespace

Dataset load_cifar10(const std::vector<std::string>& files) {
  TORCH_CHECK_VALUE(!files.empty(), "load_cifar10: no files given");
  // Check every file before allocating or reading anything.
  std::vector<int64_t> records;
  int64_t total = 0;
  for (const auto& path : files) {
    detail::require_regular_file(path, kWhat);
    const uint64_t size = detail::file_size_checked(path, kWhat);
    TORCH_CHECK_VALUE(size > 0, kWhat, " '", path, "': zero samples (the file is empty)");
    TORCH_CHECK_VALUE(size % kRecord == 0, kWhat, " '", path, "': size ", size,
                      " bytes is not a multiple of the ", kRecord,
                      "-byte record (1 label byte + 3x32x32 pixel bytes): ", size / kRecord,
                      " records + ", size % kRecord, " extra bytes");
    records.push_back(static_cast<int64_t>(size / kRecord));
    total += records.back();
  }

  torch::Tensor buf = torch::empty({total, kRecord}, torch::kUInt8);
  int64_t row = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    torch::Tensor part = buf.narrow(0, row, records[i]);
    read_exact(files[i], part.data_ptr<uint8_t>(), uint64_t(records[i]) * kRecord);
    torch::Tensor labels = part.select(1, 0);
    if (labels.max().item<int64_t>() >= kClasses) {
      const int64_t at = (labels >= kClasses).nonzero()[0][0].item<int64_t>();
      TORCH_CHECK_VALUE(false, kWhat, " '", files[i], "': label ", labels[at].item<int64_t>(),
                        " of record ", at, " is out of range; labels must be in [0, ", kClasses,
                        ")");
    }
    row += records[i];
  }

  Dataset d;
  // The narrowed view is strided; .contiguous() makes sure the result is dense before view().
  d.images =
      buf.narrow(1, 1, kPixels).to(torch::kFloat).contiguous().view({total, 3, 32, 32}).div_(255.0);
  d.labels = buf.select(1, 0).to(torch::kLong);
  d.num_classes = kClasses;
  d.name = "cifar10";
  return d;
}

Splits load_cifar10_dir(const std::string& root) {
  std::error_code ec;
  auto st = fs::status(root, ec);
  TORCH_CHECK_VALUE(fs::exists(st), "dataset directory '", root,
                    "' does not exist; it must hold the CIFAR-10 binary version "
                    "(data_batch_1.bin ... data_batch_5.bin, test_batch.bin)");
  TORCH_CHECK_VALUE(fs::is_directory(st), "dataset directory '", root, "' is not a directory");
  fs::path dir(root);
  // Accept the parent of the unpacked archive as well.
  if (!fs::exists(dir / "data_batch_1.bin", ec) &&
      fs::is_directory(dir / "cifar-10-batches-bin", ec)) {
    dir /= "cifar-10-batches-bin";
  }
  std::vector<std::string> train_files;
  for (int i = 1; i <= 5; ++i) {
    train_files.push_back((dir / ("data_batch_" + std::to_string(i) + ".bin")).string());
  }
  const std::string test_file = (dir / "test_batch.bin").string();
  for (const auto& f : train_files) detail::require_regular_file(f, kWhat);
  detail::require_regular_file(test_file, kWhat);
  Splits s;
  s.train = load_cifar10(train_files);
  s.test = load_cifar10({test_file});
  s.train.name = "cifar10/train";
  s.test.name = "cifar10/test";
  return s;
}

}  // namespace qsched::data
