#pragma once
// In-memory datasets: images as one float tensor, labels as one int64 tensor.
//
//   files (IDX .gz/raw, CIFAR-10 .bin, synthetic)
//        |  load_idx / load_cifar10 / make_synthetic          -> Dataset (uint8 -> float in [0,1])
//        v
//   split_train_val(train, val_size, seed)                     -> {train, val}  (test files
//   untouched) stratified_subset(train, n, seed)                          -> train' (--subset N)
//   Normalizer::fit(train) .apply(train/val/test)              -> zero mean, unit std (train stats)
//   Batcher(dataset, batch, shuffle, seed).start_epoch(e)      -> minibatches, order = f(seed,
//   epoch)
//
// Every loader validates its input and throws c10::ValueError (TORCH_CHECK_VALUE) with a
// one-line message naming the file and the rule that was violated; the CLI maps that to
// exit code 2. Nothing here depends on other qsched folders.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qsched::data {

/// A whole dataset held in memory.
struct Dataset {
  torch::Tensor images;  ///< float32 [N, C, H, W], values in [0,1] before normalization
  torch::Tensor labels;  ///< int64 [N], values in [0, num_classes)
  int64_t num_classes = 10;
  std::string name;  ///< e.g. "fashion-mnist/train", for messages

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  /// Rows `index` (int64 tensor of indices), same classes and name.
  Dataset select(const torch::Tensor& index) const;
};

/// Train, validation and test parts of one dataset.
struct Splits {
  Dataset train, val, test;
};

/// Reads an IDX image file (magic 0x00000803, uint8, [N, rows, cols]) and its IDX label file
/// (magic 0x00000801, uint8, [N]); each may be gzipped (detected by content, not by name).
/// Checks: file exists, magic, dims, truncation (and trailing bytes), image/label count match,
/// labels < num_classes, N > 0. Result images are [N, 1, rows, cols] in [0,1]; name = images_path.
Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes = 10);

/// Loads the standard MNIST-layout directory: train-images-idx3-ubyte(.gz),
/// train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz).
/// A missing directory names the path and the Debian package `dataset-fashion-mnist`.
/// When both `f` and `f.gz` exist, the raw `f` is used. Names are "<dir name>/train", "/test".
/// Returns {train (all 60k), test}; `val` is empty (use split_train_val).
Splits load_idx_dir(const std::string& root);

/// CIFAR-10 binary format: records of 1 label byte + 3072 pixel bytes (3x32x32, channel-major).
/// `files` are e.g. data_batch_1.bin ... ; checks existence, size % 3073 == 0, N > 0, labels < 10.
Dataset load_cifar10(const std::vector<std::string>& files);

/// Loads a CIFAR-10 binary directory (data_batch_1..5.bin, test_batch.bin).
Splits load_cifar10_dir(const std::string& root);

/// Options of the synthetic generator (for fast tests and smoke runs).
struct SyntheticOptions {
  int64_t n = 512;          ///< samples
  int64_t channels = 1;     ///< C
  int64_t height = 8;       ///< H
  int64_t width = 8;        ///< W
  int64_t num_classes = 4;  ///< classes; each class is a fixed random prototype image
  double noise = 0.3;       ///< std of the Gaussian noise added to the prototype
  uint64_t seed = 0;        ///< same seed -> identical data
};
/// Learnable synthetic data: label uniformly random, image = clamp(prototype[label] + noise).
Dataset make_synthetic(const SyntheticOptions& opt);

/// Deterministic split of `train` into {train minus val, val} with `val_size` samples chosen by
/// a seeded permutation (stratified by class). val_size must be in [1, N-1]. Both parts keep the
/// original sample order; val is named "<x>/val" for a train set named "<x>/train".
std::pair<Dataset, Dataset> split_train_val(const Dataset& train, int64_t val_size, uint64_t seed);

/// Stratified subset of n samples (as equal per class as possible), seeded, order shuffled.
/// n must be in [1, N]; n == N returns the dataset unchanged.
Dataset stratified_subset(const Dataset& d, int64_t n, uint64_t seed);

/// Per-channel normalization with statistics from one dataset (the training split).
struct Normalizer {
  torch::Tensor mean;  ///< [C]
  torch::Tensor std;   ///< [C], >= 1e-6
  static Normalizer fit(const Dataset& d);
  void apply(Dataset& d) const;  ///< in place: (x - mean) / std
};

/// Minibatches over an in-memory dataset. The order of epoch e is a pure function of
/// (seed, e), so a resumed run sees exactly the batches an uninterrupted run would.
/// The Batcher keeps a pointer to `d`: the dataset must outlive it (and not be reassigned).
class Batcher {
 public:
  Batcher(const Dataset& d, int64_t batch_size, bool shuffle, uint64_t seed);
  /// Starts epoch `e`; then next() yields batches until it returns false.
  void start_epoch(int64_t e);
  bool next(torch::Tensor& x, torch::Tensor& y);
  int64_t batches_per_epoch() const;
  int64_t batch_size() const { return batch_size_; }

 private:
  const Dataset* d_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  torch::Tensor order_;
  int64_t pos_ = 0;
};

/// Derives a 64-bit seed for a component from (seed, salt, index) (splitmix64); used everywhere
/// a generator is needed so that runs are reproducible and streams independent.
uint64_t derive_seed(uint64_t seed, uint64_t salt, uint64_t index = 0);

}  // namespace qsched::data
