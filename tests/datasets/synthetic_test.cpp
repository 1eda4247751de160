// Synthetic generator and derive_seed.
#include <gtest/gtest.h>

#include <set>

#include "datasets/dataset.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

using qsched::data::derive_seed;
using qsched::data::make_synthetic;
using qsched::data::SyntheticOptions;

TEST(Synthetic, ShapesAndRanges) {
  SyntheticOptions opt;
  opt.n = 300;
  opt.channels = 3;
  opt.height = 5;
  opt.width = 7;
  opt.num_classes = 6;
  auto d = make_synthetic(opt);
  EXPECT_EQ(d.images.sizes(), (torch::IntArrayRef{300, 3, 5, 7}));
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat);
  EXPECT_EQ(d.labels.sizes(), (torch::IntArrayRef{300}));
  EXPECT_EQ(d.labels.scalar_type(), torch::kLong);
  EXPECT_EQ(d.num_classes, 6);
  EXPECT_GE(d.images.min().item<float>(), 0.f);
  EXPECT_LE(d.images.max().item<float>(), 1.f);
  EXPECT_GE(d.labels.min().item<int64_t>(), 0);
  EXPECT_LE(d.labels.max().item<int64_t>(), 5);
  // Every class occurs (300 samples, 6 classes).
  EXPECT_EQ(torch::bincount(d.labels).size(0), 6);
  EXPECT_TRUE(torch::all(torch::bincount(d.labels) > 0).item<bool>());
}

TEST(Synthetic, SameSeedIdenticalDifferentSeedDiffers) {
  SyntheticOptions opt;
  opt.seed = 42;
  auto a = make_synthetic(opt), b = make_synthetic(opt);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  // The global generator does not matter.
  torch::manual_seed(123);
  auto c = make_synthetic(opt);
  EXPECT_TRUE(torch::equal(a.images, c.images));
  opt.seed = 43;
  auto d = make_synthetic(opt);
  EXPECT_FALSE(torch::equal(a.images, d.images));
  EXPECT_FALSE(torch::equal(a.labels, d.labels));
  // Seeds differing only in the high 32 bits differ too.
  opt.seed = 42 + (uint64_t(1) << 32);
  EXPECT_FALSE(torch::equal(a.images, make_synthetic(opt).images));
}

TEST(Synthetic, ZeroNoiseGivesPrototypes) {
  SyntheticOptions opt;
  opt.noise = 0;
  auto d = make_synthetic(opt);
  for (int64_t c = 0; c < opt.num_classes; ++c) {
    auto members = d.images.index_select(0, (d.labels == c).nonzero().flatten());
    ASSERT_GT(members.size(0), 1);
    EXPECT_TRUE(torch::equal(members, members[0].expand_as(members))) << "class " << c;
  }
}

TEST(Synthetic, Learnable) {
  // With the default noise, the nearest class mean classifies most samples correctly.
  auto d = make_synthetic(SyntheticOptions{});
  auto x = d.images.flatten(1);
  std::vector<torch::Tensor> means;
  for (int64_t c = 0; c < d.num_classes; ++c) means.push_back(x.index({d.labels == c}).mean(0));
  auto pred = torch::cdist(x, torch::stack(means)).argmin(1);
  EXPECT_GT((pred == d.labels).to(torch::kFloat).mean().item<float>(), 0.9f);
}

TEST(Synthetic, BadOptions) {
  SyntheticOptions opt;
  opt.n = 0;
  EXPECT_VALUE_ERROR(make_synthetic(opt), "n = 0 must be in [1,");
  opt = {};
  opt.num_classes = 0;
  EXPECT_VALUE_ERROR(make_synthetic(opt), "num_classes = 0");
  opt = {};
  opt.width = -1;
  EXPECT_VALUE_ERROR(make_synthetic(opt), "width = -1");
  opt = {};
  opt.noise = -0.1;
  EXPECT_VALUE_ERROR(make_synthetic(opt), "noise = -0.1");
  opt = {};
  opt.n = 1 << 30;
  opt.height = 1000;
  EXPECT_VALUE_ERROR(make_synthetic(opt), "exceeds the limit");
}

TEST(DeriveSeed, DeterministicAndSensitiveToEveryArgument) {
  EXPECT_EQ(derive_seed(1, 2, 3), derive_seed(1, 2, 3));
  std::set<uint64_t> seen;
  for (uint64_t s : {0, 1, 2}) {
    for (uint64_t salt : {0, 1, 2}) {
      for (uint64_t i : {0, 1, 2}) seen.insert(derive_seed(s, salt, i));
    }
  }
  EXPECT_EQ(seen.size(), 27u);
  EXPECT_EQ(derive_seed(5, 6), derive_seed(5, 6, 0));
  // Low 32 bits (all that mt19937 uses) differ for seeds differing only in high bits.
  EXPECT_NE(uint32_t(derive_seed(7, 0)), uint32_t(derive_seed(7 + (uint64_t(1) << 40), 0)));
}

}  // namespace
}  // namespace qsched::test
