// CIFAR-10 binary loader.
#include <gtest/gtest.h>

#include <filesystem>

#include "datasets/dataset.h"
#include "tests/datasets/data_files.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

using qsched::data::load_cifar10;
using qsched::data::load_cifar10_dir;

TEST(Cifar10, RoundTrip) {
  TempDir dir;
  write_file(dir.file("a.bin"), cifar_records({3, 9, 0}));
  write_file(dir.file("b.bin"), cifar_records({7, 1}));
  auto d = load_cifar10({dir.file("a.bin"), dir.file("b.bin")});
  ASSERT_EQ(d.size(), 5);
  EXPECT_EQ(d.images.sizes(), (torch::IntArrayRef{5, 3, 32, 32}));
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat);
  EXPECT_TRUE(d.images.is_contiguous());
  EXPECT_TRUE(torch::equal(d.labels, torch::tensor({3, 9, 0, 7, 1}, torch::kLong)));
  EXPECT_EQ(d.num_classes, 10);
  // Record r of its file: pixel j = (r + j) % 256, channel-major.
  for (int64_t i : {0, 2, 3, 4}) {
    const int64_t r = i < 3 ? i : i - 3;
    auto expected = ((torch::arange(3072, torch::kLong) + r) % 256).to(torch::kFloat).div(255.0);
    EXPECT_TRUE(torch::equal(d.images[i].flatten(), expected)) << "sample " << i;
  }
  // Channel-major: pixel (c, y, x) is byte c*1024 + y*32 + x.
  EXPECT_FLOAT_EQ(d.images[0][1][2][3].item<float>(), float((1024 + 2 * 32 + 3) % 256) / 255.f);
}

TEST(Cifar10, MissingFile) {
  TempDir dir;
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("x.bin")}), dir.file("x.bin") + "': missing file");
  EXPECT_VALUE_ERROR(load_cifar10({}), "no files");
}

TEST(Cifar10, SizeNotAMultipleOfRecord) {
  TempDir dir;
  write_file(dir.file("a.bin"), cifar_records({1, 2}) + "abc");
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("a.bin")}),
                     dir.file("a.bin") + "': size 6149 bytes is not a multiple of the 3073-byte");
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("a.bin")}), "2 records + 3 extra bytes");
  write_file(dir.file("a.bin"), cifar_records({1}).substr(0, 3000));
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("a.bin")}), "0 records + 3000 extra bytes");
}

TEST(Cifar10, EmptyFile) {
  TempDir dir;
  write_file(dir.file("a.bin"), "");
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("a.bin")}), "zero samples");
}

TEST(Cifar10, LabelOutOfRange) {
  TempDir dir;
  write_file(dir.file("a.bin"), cifar_records({1, 2}));
  write_file(dir.file("b.bin"), cifar_records({1, 2, 10, 11}));
  EXPECT_VALUE_ERROR(load_cifar10({dir.file("a.bin"), dir.file("b.bin")}),
                     dir.file("b.bin") + "': label 10 of record 2 is out of range");
}

TEST(Cifar10, Directory) {
  TempDir dir;
  const std::string root = dir.file("cifar-10-batches-bin");
  for (int i = 1; i <= 5; ++i) {
    write_file(root + "/data_batch_" + std::to_string(i) + ".bin", cifar_records({uint8_t(i)}));
  }
  write_file(root + "/test_batch.bin", cifar_records({0, 1}));
  for (const auto& r : {root, dir.path()}) {  // the unpacked dir or its parent
    auto s = load_cifar10_dir(r);
    EXPECT_EQ(s.train.size(), 5);
    EXPECT_EQ(s.test.size(), 2);
    EXPECT_EQ(s.val.size(), 0);
    EXPECT_TRUE(torch::equal(s.train.labels, torch::arange(1, 6, torch::kLong)));
    EXPECT_EQ(s.train.name, "cifar10/train");
  }
  std::filesystem::remove(root + "/data_batch_4.bin");
  EXPECT_VALUE_ERROR(load_cifar10_dir(root), "data_batch_4.bin': missing file");
  EXPECT_VALUE_ERROR(load_cifar10_dir(dir.file("nope")), "does not exist");
}

}  // namespace
}  // namespace qsched::test
