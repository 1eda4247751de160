// IDX loader: round trips and every bad-input rule, raw and gzipped.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "datasets/dataset.h"
#include "tests/datasets/data_files.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

using qsched::data::load_idx;
using qsched::data::load_idx_dir;

/// Parameter: gzip-compressed files (true) or raw files (false).
class IdxFiles : public ::testing::TestWithParam<bool> {
 protected:
  bool gz() const { return GetParam(); }
  std::string path(const std::string& name) const { return dir_.file(name + (gz() ? ".gz" : "")); }
  /// Writes images and labels files, returns nothing; paths via images()/labels().
  void write(const std::string& image_bytes, const std::string& label_bytes) {
    write_maybe_gz(images(), image_bytes, gz());
    write_maybe_gz(labels(), label_bytes, gz());
  }
  std::string images() const { return path("images-idx3-ubyte"); }
  std::string labels() const { return path("labels-idx1-ubyte"); }
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(RawAndGz, IdxFiles, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "gz" : "raw"; });

TEST_P(IdxFiles, RoundTrip) {
  write(idx_images(5, 4, 3), idx_labels({3, 1, 4, 1, 5}));
  auto d = load_idx(images(), labels());
  ASSERT_EQ(d.size(), 5);
  EXPECT_EQ(d.images.sizes(), (torch::IntArrayRef{5, 1, 4, 3}));
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat);
  EXPECT_EQ(d.labels.scalar_type(), torch::kLong);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_TRUE(torch::equal(d.labels, torch::tensor({3, 1, 4, 1, 5}, torch::kLong)));
  auto expected = (torch::arange(60, torch::kLong) * 7 % 256).to(torch::kFloat).div(255.0);
  EXPECT_TRUE(torch::equal(d.images.flatten(), expected));
  EXPECT_EQ(d.images.max().item<float>(), 252.f / 255.f);
}

TEST_P(IdxFiles, MissingFile) {
  write(idx_images(2, 2, 2), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(dir_.file("nope"), labels()), dir_.file("nope") + "': missing file");
  EXPECT_VALUE_ERROR(load_idx(images(), dir_.file("nope")), "missing file");
}

TEST_P(IdxFiles, DirectoryIsNotAFile) {
  write(idx_images(2, 2, 2), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(dir_.path(), labels()), "not a regular file");
}

TEST_P(IdxFiles, WrongMagic) {
  write(idx_images(2, 2, 2, 0, 0x00000802), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()),
                     images() + "': wrong magic number: expected 0x00000803");
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "found 0x00000802");
}

TEST_P(IdxFiles, SwappedFilesHitMagicCheck) {
  write(idx_images(2, 2, 2), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(labels(), images()), "expected 0x00000803");
  EXPECT_VALUE_ERROR(load_idx(labels(), images()), "found 0x00000801 (an IDX label file)");
  EXPECT_VALUE_ERROR(load_idx(images(), images()), "expected 0x00000801");
}

TEST_P(IdxFiles, EmptyAndShortHeader) {
  write("", idx_labels({0}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "truncated header: expected 16 bytes, found 0");
  write(idx_images(1, 1, 1).substr(0, 10), idx_labels({0}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "truncated header: expected 16 bytes, found 10");
}

TEST_P(IdxFiles, TruncatedPixels) {
  std::string bytes = idx_images(3, 4, 4);  // 16 + 48 bytes
  write(bytes.substr(0, bytes.size() - 5), idx_labels({0, 1, 2}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), images() + "': truncated file");
  EXPECT_VALUE_ERROR(load_idx(images(), labels()),
                     "expected 64 bytes (16-byte header + 3 images of 4x4), found 59 bytes");
}

TEST_P(IdxFiles, TruncatedLabels) {
  write(idx_images(3, 2, 2), idx_labels({0, 1, 2}).substr(0, 10));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()),
                     "truncated file: expected 11 bytes (8-byte header + 3 labels), found 10");
}

TEST_P(IdxFiles, HugeDeclaredCountWithShortFileFailsFast) {
  // The header claims 2^31-1 images of 28x28 (1.7 TB) but the file holds one image.
  std::string bytes = be32(0x803) + be32(0x7fffffff) + be32(28) + be32(28) + std::string(784, 'x');
  write(bytes, be32(0x801) + be32(0x7fffffff) + std::string(10, '\1'));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "truncated file");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST_P(IdxFiles, CountMismatch) {
  write(idx_images(3, 2, 2), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()),
                     "image/label count mismatch: 3 images but 2 labels");
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), labels());
}

TEST_P(IdxFiles, LabelOutOfRange) {
  write(idx_images(4, 2, 2), idx_labels({0, 9, 10, 3}));
  EXPECT_VALUE_ERROR(
      load_idx(images(), labels()),
      labels() + "': label 10 at index 2 is out of range; labels must be in [0, 10)");
  EXPECT_VALUE_ERROR(load_idx(images(), labels(), 5), "label 9 at index 1");
  EXPECT_EQ(load_idx(images(), labels(), 11).num_classes, 11);
}

TEST_P(IdxFiles, ZeroSamples) {
  write(idx_images(0, 28, 28), idx_labels({}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), images() + "': zero samples");
}

TEST_P(IdxFiles, BadDims) {
  write(idx_images(2, 0, 28), idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "bad dims: images are 0x28");
  write(be32(0x803) + be32(1) + be32(28) + be32(1u << 20), idx_labels({0}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "bad dims: images are 28x1048576");
  write(be32(0x803) + be32(0x80000000u) + be32(28) + be32(28), idx_labels({0}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "bad dims");
}

TEST_P(IdxFiles, TrailingBytes) {
  write(idx_images(2, 2, 2) + "xyz", idx_labels({0, 1}));
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "unexpected");
  EXPECT_VALUE_ERROR(load_idx(images(), labels()), "after the 24 bytes the header declares");
}

TEST(IdxGzip, CutOffStream) {
  TempDir dir;
  std::string gz = gzip_bytes(idx_images(50, 8, 8));
  write_file(dir.file("images.gz"), gz.substr(0, gz.size() / 2));
  write_file(dir.file("labels"), idx_labels(cyclic_labels(50)));
  EXPECT_VALUE_ERROR(load_idx(dir.file("images.gz"), dir.file("labels")),
                     "truncated file: expected 3216 bytes");
  EXPECT_VALUE_ERROR(load_idx(dir.file("images.gz"), dir.file("labels")),
                     "(the gzip stream is cut off)");
  // Only the 8-byte gzip trailer missing: all data present, but the stream is incomplete.
  write_file(dir.file("images.gz"), gz.substr(0, gz.size() - 8));
  EXPECT_VALUE_ERROR(load_idx(dir.file("images.gz"), dir.file("labels")), "truncated gzip stream");
}

TEST(IdxGzip, CorruptStream) {
  TempDir dir;
  std::string gz = gzip_bytes(idx_images(50, 8, 8));
  for (size_t i = 20; i < gz.size() - 8; ++i) gz[i] = static_cast<char>(gz[i] ^ 0x5a);
  write_file(dir.file("images.gz"), gz);
  write_file(dir.file("labels"), idx_labels(cyclic_labels(50)));
  EXPECT_VALUE_ERROR(load_idx(dir.file("images.gz"), dir.file("labels")), "images.gz'");
  write_file(dir.file("images.gz"), std::string("\x1f\x8b garbage garbage garbage"));
  EXPECT_VALUE_ERROR(load_idx(dir.file("images.gz"), dir.file("labels")), "corrupt gzip data");
}

TEST(IdxGzip, MultiMemberAndDetectionByContent) {
  TempDir dir;
  const std::string raw = idx_images(6, 3, 3);
  // Two concatenated gzip members (what `cat a.gz b.gz` gives), under a name without .gz.
  write_file(dir.file("images"), gzip_bytes(raw.substr(0, 40)) + gzip_bytes(raw.substr(40)));
  write_file(dir.file("labels.gz"), idx_labels(cyclic_labels(6)));  // raw despite the name
  auto d = load_idx(dir.file("images"), dir.file("labels.gz"));
  ASSERT_EQ(d.size(), 6);
  auto ref_dir = TempDir();
  write_file(ref_dir.file("images"), raw);
  EXPECT_TRUE(
      torch::equal(d.images, load_idx(ref_dir.file("images"), dir.file("labels.gz")).images));
}

TEST(IdxDir, MissingDirectoryNamesPackage) {
  TempDir dir;
  const std::string root = dir.file("no-such-dir");
  EXPECT_VALUE_ERROR(load_idx_dir(root), "dataset directory '" + root + "' does not exist");
  EXPECT_VALUE_ERROR(load_idx_dir(root), "`dataset-fashion-mnist`");
  write_file(dir.file("plain"), "x");
  EXPECT_VALUE_ERROR(load_idx_dir(dir.file("plain")), "is not a directory");
}

TEST(IdxDir, MissingFile) {
  TempDir dir;
  write_idx_dir(dir.path(), true);
  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  EXPECT_VALUE_ERROR(load_idx_dir(dir.path()),
                     "missing file: neither '" + dir.file("t10k-labels-idx1-ubyte.gz") + "' nor '" +
                         dir.file("t10k-labels-idx1-ubyte") + "' exists");
}

TEST(IdxDir, LoadsGzRawAndMixed) {
  TempDir gz, raw;
  write_idx_dir(gz.path(), true);
  write_idx_dir(raw.path(), false);
  // Mixed: raw train images next to gzipped others.
  std::filesystem::remove(gz.file("train-images-idx3-ubyte.gz"));
  std::filesystem::copy_file(raw.file("train-images-idx3-ubyte"),
                             gz.file("train-images-idx3-ubyte"));
  auto a = load_idx_dir(gz.path()), b = load_idx_dir(raw.path() + "/");
  for (const auto* s : {&a, &b}) {
    EXPECT_EQ(s->train.size(), 30);
    EXPECT_EQ(s->test.size(), 20);
    EXPECT_EQ(s->val.size(), 0);
    EXPECT_EQ(s->train.images.sizes(), (torch::IntArrayRef{30, 1, 4, 3}));
    EXPECT_EQ(s->test.images.sizes(), (torch::IntArrayRef{20, 1, 4, 3}));
  }
  EXPECT_EQ(a.train.name, std::filesystem::path(gz.path()).filename().string() + "/train");
  EXPECT_TRUE(torch::equal(a.train.images, b.train.images));
  EXPECT_TRUE(torch::equal(a.test.labels, b.test.labels));
  EXPECT_EQ(b.test.name, std::filesystem::path(raw.path()).filename().string() + "/test");
}

TEST(IdxDir, PrefersRawWhenBothExist) {
  TempDir dir;
  write_idx_dir(dir.path(), true);
  // A raw train-labels file with different content next to the .gz one.
  std::vector<uint8_t> sevens(30, 7);
  write_file(dir.file("train-labels-idx1-ubyte"), idx_labels(sevens));
  auto s = load_idx_dir(dir.path());
  EXPECT_TRUE(torch::all(s.train.labels == 7).item<bool>());
}

TEST(IdxDir, TrainTestShapeMismatch) {
  TempDir dir;
  write_idx_dir(dir.path(), false);
  write_file(dir.file("t10k-images-idx3-ubyte"), idx_images(20, 5, 5));
  EXPECT_VALUE_ERROR(load_idx_dir(dir.path()), "bad dims");
}

TEST(IdxDir, RealFashionMnist) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::is_directory(root)) GTEST_SKIP() << root << " not installed";
  const auto t0 = std::chrono::steady_clock::now();
  auto s = load_idx_dir(root);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("load_seconds", std::to_string(seconds));
  std::cout << "[          ] fashion-mnist train+test loaded in " << seconds << " s\n";
  EXPECT_EQ(s.train.images.sizes(), (torch::IntArrayRef{60000, 1, 28, 28}));
  EXPECT_EQ(s.test.images.sizes(), (torch::IntArrayRef{10000, 1, 28, 28}));
  EXPECT_EQ(s.train.labels.sizes(), (torch::IntArrayRef{60000}));
  EXPECT_EQ(s.test.labels.sizes(), (torch::IntArrayRef{10000}));
  for (const auto* d : {&s.train, &s.test}) {
    EXPECT_GE(d->labels.min().item<int64_t>(), 0);
    EXPECT_LE(d->labels.max().item<int64_t>(), 9);
    EXPECT_GE(d->images.min().item<float>(), 0.f);
    EXPECT_LE(d->images.max().item<float>(), 1.f);
  }
  // Fashion-MNIST is balanced: 6000 / 1000 per class.
  EXPECT_TRUE(torch::all(torch::bincount(s.train.labels) == 6000).item<bool>());
  EXPECT_TRUE(torch::all(torch::bincount(s.test.labels) == 1000).item<bool>());
  EXPECT_EQ(s.train.name, "fashion-mnist/train");
}

}  // namespace
}  // namespace qsched::test
