// split_train_val, stratified_subset, Dataset::select, Normalizer, Batcher.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "datasets/dataset.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

using namespace qsched::data;

/// Sample i has label labels[i] and a 1x2x2 image filled with i, so a row identifies its sample.
Dataset identified(const std::vector<int64_t>& labels, int64_t num_classes) {
  const int64_t n = static_cast<int64_t>(labels.size());
  Dataset d;
  d.images = torch::arange(n, torch::kFloat).view({n, 1, 1, 1}).expand({n, 1, 2, 2}).contiguous();
  d.labels = torch::tensor(labels, torch::kLong);
  d.num_classes = num_classes;
  d.name = "test";
  return d;
}

/// Class c has counts[c] samples, interleaved.
Dataset with_counts(const std::vector<int64_t>& counts) {
  std::vector<int64_t> labels;
  for (int64_t round = 0;; ++round) {
    bool any = false;
    for (size_t c = 0; c < counts.size(); ++c) {
      if (round < counts[c]) {
        labels.push_back(static_cast<int64_t>(c));
        any = true;
      }
    }
    if (!any) break;
  }
  return identified(labels, static_cast<int64_t>(counts.size()));
}

/// Sample ids (the image values) of a dataset built by identified().
std::vector<int64_t> ids(const Dataset& d) {
  auto t = d.images.select(1, 0).select(1, 0).select(1, 0).to(torch::kLong).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

std::vector<int64_t> class_counts(const Dataset& d) {
  auto t = torch::bincount(d.labels, {}, d.num_classes).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(Select, RowsAndMetadata) {
  auto d = with_counts({3, 3});
  auto s = d.select(torch::tensor({4, 0, 4}, torch::kLong));
  EXPECT_EQ(ids(s), (std::vector<int64_t>{4, 0, 4}));
  EXPECT_TRUE(torch::equal(s.labels, torch::tensor({0, 0, 0}, torch::kLong)));
  EXPECT_EQ(s.num_classes, 2);
  EXPECT_EQ(s.name, "test");
}

TEST(Split, SizesDisjointAndComplete) {
  auto d = with_counts({100, 50, 30, 20});
  auto [train, val] = split_train_val(d, 40, 7);
  EXPECT_EQ(train.size(), 160);
  EXPECT_EQ(val.size(), 40);
  std::set<int64_t> all;
  for (int64_t i : ids(train)) all.insert(i);
  for (int64_t i : ids(val)) EXPECT_TRUE(all.insert(i).second) << "sample " << i << " in both";
  EXPECT_EQ(all.size(), 200u);
  // Labels still belong to their images.
  for (const auto* part : {&train, &val}) {
    auto orig = d.labels.index_select(0, torch::tensor(ids(*part), torch::kLong));
    EXPECT_TRUE(torch::equal(orig, part->labels));
    EXPECT_EQ(part->num_classes, 4);
  }
}

TEST(Split, Names) {
  auto d = with_counts({5, 5});
  d.name = "fashion-mnist/train";
  auto [t, v] = split_train_val(d, 2, 1);
  EXPECT_EQ(t.name, "fashion-mnist/train");
  EXPECT_EQ(v.name, "fashion-mnist/val");
  d.name = "synthetic";
  EXPECT_EQ(split_train_val(d, 2, 1).second.name, "synthetic/val");
}

TEST(Split, Stratified) {
  auto d = with_counts({100, 50, 30, 20});
  auto [train, val] = split_train_val(d, 40, 7);
  EXPECT_EQ(class_counts(val), (std::vector<int64_t>{20, 10, 6, 4}));
  EXPECT_EQ(class_counts(train), (std::vector<int64_t>{80, 40, 24, 16}));
  // Non-exact proportions: each class within one of its share, total exact.
  auto [train2, val2] = split_train_val(d, 33, 1);
  auto c = class_counts(val2);
  const double share[] = {16.5, 8.25, 4.95, 3.3};
  int64_t total = 0;
  for (int k = 0; k < 4; ++k) {
    EXPECT_LE(std::abs(double(c[k]) - share[k]), 1.0) << "class " << k;
    total += c[k];
  }
  EXPECT_EQ(total, 33);
}

TEST(Split, DeterministicAndSeeded) {
  auto d = with_counts({60, 60, 60});
  auto [t1, v1] = split_train_val(d, 30, 5);
  auto [t2, v2] = split_train_val(d, 30, 5);
  EXPECT_EQ(ids(v1), ids(v2));
  EXPECT_EQ(ids(t1), ids(t2));
  torch::manual_seed(99);  // the global generator plays no role
  auto [t3, v3] = split_train_val(d, 30, 5);
  EXPECT_EQ(ids(v1), ids(v3));
  auto [t4, v4] = split_train_val(d, 30, 6);
  EXPECT_NE(ids(v1), ids(v4));
}

TEST(Split, BadSize) {
  auto d = with_counts({5, 5});
  EXPECT_VALUE_ERROR(split_train_val(d, 0, 1), "val_size = 0 must be in [1, 9]");
  EXPECT_VALUE_ERROR(split_train_val(d, 10, 1), "val_size = 10 must be in [1, 9]");
  auto [t, v] = split_train_val(d, 9, 1);
  EXPECT_EQ(t.size(), 1);
  auto bad = d;
  bad.labels = bad.labels.clone();
  bad.labels[3] = 2;
  EXPECT_VALUE_ERROR(split_train_val(bad, 3, 1), "must be in [0, 2)");
}

TEST(Subset, EqualPerClass) {
  auto d = with_counts({50, 50, 50, 50});
  auto s = stratified_subset(d, 20, 3);
  EXPECT_EQ(class_counts(s), (std::vector<int64_t>{5, 5, 5, 5}));
  auto s2 = stratified_subset(d, 22, 3);
  for (int64_t c : class_counts(s2)) EXPECT_TRUE(c == 5 || c == 6);
  EXPECT_EQ(s2.size(), 22);
  std::set<int64_t> unique;
  for (int64_t i : ids(s2)) unique.insert(i);
  EXPECT_EQ(unique.size(), 22u);
}

TEST(Subset, SmallClassesTakenWhole) {
  auto d = with_counts({100, 3, 40, 1});
  auto s = stratified_subset(d, 40, 3);
  // Classes 3 and 1 give everything; the remaining 36 are shared equally by classes 0 and 2.
  EXPECT_EQ(class_counts(s), (std::vector<int64_t>{18, 3, 18, 1}));
  auto s2 = stratified_subset(d, 140, 3);
  EXPECT_EQ(class_counts(s2), (std::vector<int64_t>{96, 3, 40, 1}));
}

TEST(Subset, ShuffledDeterministicSeeded) {
  auto d = with_counts({50, 50});
  auto a = stratified_subset(d, 40, 11), b = stratified_subset(d, 40, 11);
  EXPECT_EQ(ids(a), ids(b));
  auto ia = ids(a);
  EXPECT_FALSE(std::is_sorted(ia.begin(), ia.end()));
  EXPECT_NE(ids(stratified_subset(d, 40, 12)), ia);
}

TEST(Subset, WholeAndBad) {
  auto d = with_counts({5, 5});
  auto all = stratified_subset(d, 10, 1);
  EXPECT_TRUE(torch::equal(all.images, d.images));
  EXPECT_TRUE(torch::equal(all.labels, d.labels));
  EXPECT_VALUE_ERROR(stratified_subset(d, 0, 1), "subset size 0 must be in [1, 10]");
  EXPECT_VALUE_ERROR(stratified_subset(d, 11, 1), "subset size 11 must be in [1, 10]");
}

TEST(Normalizer, PerChannelStatsFromTrain) {
  auto gen = at::detail::createCPUGenerator(3);
  Dataset train;
  train.images = torch::rand({200, 3, 4, 4}, gen);
  train.images.select(1, 1).mul_(5).add_(2);
  train.images.select(1, 2).zero_().add_(0.25);  // constant channel: std clamped to 1e-6
  train.labels = torch::zeros({200}, torch::kLong);
  auto norm = Normalizer::fit(train);
  ASSERT_EQ(norm.mean.sizes(), (torch::IntArrayRef{3}));
  ASSERT_EQ(norm.std.sizes(), (torch::IntArrayRef{3}));
  auto x = train.images.transpose(0, 1).reshape({3, -1}).to(torch::kDouble);
  auto mean = x.mean(1);
  auto sd = (x - mean.unsqueeze(1)).pow(2).mean(1).sqrt();
  EXPECT_TRUE(torch::allclose(norm.mean.to(torch::kDouble), mean, 1e-5, 1e-6));
  EXPECT_NEAR(norm.std[0].item<double>(), sd[0].item<double>(), 1e-5);
  EXPECT_NEAR(norm.std[1].item<double>(), sd[1].item<double>(), 1e-5);
  EXPECT_FLOAT_EQ(norm.std[2].item<float>(), 1e-6f);

  const torch::Tensor before = train.images;
  const torch::Tensor before_copy = before.clone();
  auto applied = train;
  norm.apply(applied);
  EXPECT_TRUE(torch::equal(before, before_copy)) << "apply must not write into a shared tensor";
  auto y = applied.images.transpose(0, 1).reshape({3, -1});
  EXPECT_NEAR(y[0].mean().item<float>(), 0.f, 1e-5);
  EXPECT_NEAR(y[1].mean().item<float>(), 0.f, 1e-5);
  EXPECT_NEAR(y[0].std(false).item<float>(), 1.f, 1e-4);
  EXPECT_NEAR(y[1].std(false).item<float>(), 1.f, 1e-4);

  Dataset other;
  other.images = torch::zeros({2, 1, 4, 4});
  other.labels = torch::zeros({2}, torch::kLong);
  EXPECT_VALUE_ERROR(norm.apply(other), "expected 3 channels");
}

/// All sample ids of one epoch, in order, plus the batch sizes.
std::vector<int64_t> run_epoch(Batcher& b, int64_t e, std::vector<int64_t>* sizes = nullptr) {
  b.start_epoch(e);
  std::vector<int64_t> out;
  torch::Tensor x, y;
  while (b.next(x, y)) {
    EXPECT_EQ(x.size(0), y.size(0));
    EXPECT_EQ(x.sizes().slice(1), (torch::IntArrayRef{1, 2, 2}));
    auto id = x.select(1, 0).select(1, 0).select(1, 0).to(torch::kLong);
    EXPECT_TRUE(torch::equal(id, y)) << "image and label of one sample stay together";
    out.insert(out.end(), id.data_ptr<int64_t>(), id.data_ptr<int64_t>() + id.numel());
    if (sizes) sizes->push_back(x.size(0));
  }
  return out;
}

/// Dataset whose label equals the sample id (so a batch can be checked against its images).
Dataset id_labelled(int64_t n) {
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = i;
  return identified(labels, n);
}

TEST(Batcher, EverySampleOncePerEpochLastPartialKept) {
  auto d = id_labelled(103);
  Batcher b(d, 10, true, 1);
  EXPECT_EQ(b.batches_per_epoch(), 11);
  EXPECT_EQ(b.batch_size(), 10);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> sizes;
    auto order = run_epoch(b, e, &sizes);
    ASSERT_EQ(order.size(), 103u);
    EXPECT_EQ(sizes.size(), 11u);
    EXPECT_EQ(sizes.back(), 3);
    std::sort(order.begin(), order.end());
    for (int64_t i = 0; i < 103; ++i) EXPECT_EQ(order[i], i);
  }
}

TEST(Batcher, OrderIsAFunctionOfSeedAndEpoch) {
  auto d = id_labelled(64);
  Batcher a(d, 16, true, 9), b(d, 16, true, 9);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 4; ++e) epochs.push_back(run_epoch(a, e));
  // A fresh batcher resumed at epoch 3 sees exactly epoch 3; replays are identical.
  EXPECT_EQ(run_epoch(b, 3), epochs[3]);
  EXPECT_EQ(run_epoch(b, 1), epochs[1]);
  EXPECT_EQ(run_epoch(a, 0), epochs[0]);
  // Different epochs and different seeds differ; all are shuffled.
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  Batcher c(d, 16, true, 10);
  EXPECT_NE(run_epoch(c, 0), epochs[0]);
  EXPECT_FALSE(std::is_sorted(epochs[0].begin(), epochs[0].end()));
  // The global generator plays no role.
  torch::manual_seed(5);
  EXPECT_EQ(run_epoch(b, 2), epochs[2]);
}

TEST(Batcher, NoShuffleKeepsOrder) {
  auto d = id_labelled(25);
  Batcher b(d, 7, false, 3);
  auto order = run_epoch(b, 4);
  ASSERT_EQ(order.size(), 25u);
  for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(order[i], i);
}

TEST(Batcher, BatchesAreCopies) {
  auto d = id_labelled(8);
  const auto before = d.images.clone();
  Batcher b(d, 4, false, 0);
  b.start_epoch(0);
  torch::Tensor x, y;
  ASSERT_TRUE(b.next(x, y));
  x.fill_(-1);
  EXPECT_TRUE(torch::equal(d.images, before));
}

TEST(Batcher, BadArguments) {
  auto d = id_labelled(8);
  EXPECT_VALUE_ERROR(Batcher(d, 0, true, 0), "batch size 0 must be >= 1");
  Batcher b(d, 3, true, 0);
  EXPECT_VALUE_ERROR(b.start_epoch(-1), "epoch -1 must be >= 0");
  EXPECT_EQ(b.batches_per_epoch(), 3);
}

}  // namespace
}  // namespace qsched::test
