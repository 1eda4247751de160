#pragma once
// The run configuration: one JSON document, validated strictly, fully resolved (every default
// filled in) and saved as <run>/config.json.
//
// {
//   "seed": 0,                       // every generator derives from it (data order, init, ...)
//   "device": "cpu",                 // "cpu" | "cuda" | "cuda:K"
//   "threads": 1,                    // torch intra-op and OpenBLAS threads
//   "algorithm": "float",            // a registered algorithm (inner/algorithms/registry.h):
//                                    // "float", "inq", "ana"; its section, e.g. "inq": {...},
//                                    // is resolved by the algorithm (inner/inq/inq.h, ana.h)
//   "data": {
//     "format": "idx",               // "idx" (MNIST layout) | "cifar10" | "synthetic"
//     "root": "/usr/share/datasets/fashion-mnist",
//     "val_size": 5000,              // carved from the training files, stratified, seeded
//     "subset": 0,                   // >0: stratified subset of the remaining training set
//     "normalize": true,             // per-channel mean/std of the training split
//     "synthetic": {"n": 2048, "test_n": 512, "channels": 1, "height": 8, "width": 8,
//                   "num_classes": 4, "noise": 0.3}
//   },
//   "network": {"type": "mlp", "hidden": [256]},        // see inner/network.h
//   "train": {
//     "epochs": 10, "batch_size": 128, "eval_batch_size": 1000,
//     "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": false,
//                   "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
//     "lr_schedule": {"name": "cosine", "step_size": 10, "gamma": 0.1, "min_lr": 0.0,
//                     "warmup_epochs": 0}
//   }
// }
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "inner/base/json_reader.h"

namespace qsched::inner {

/// Upper bounds of run configs, checked when the config is parsed (before any allocation or
/// training): far above any sensible run, low enough that a typo cannot exhaust the machine.
inline constexpr int64_t kMaxEpochs = 100000;
inline constexpr int64_t kMaxBatchSize = int64_t{1} << 20;
inline constexpr int64_t kMaxSyntheticImages = int64_t{1} << 24;
inline constexpr int64_t kMaxSyntheticFloats = int64_t{1} << 30;  ///< 4 GiB of pixels

struct DataConfig {
  std::string format = "idx";
  std::string root = "/usr/share/datasets/fashion-mnist";
  int64_t val_size = 5000;
  int64_t subset = 0;
  bool normalize = true;
  data::SyntheticOptions synthetic;  ///< format == "synthetic": the training part
  int64_t synthetic_test_n = 512;    ///< format == "synthetic": test samples
};

struct OptimizerConfig {
  std::string name = "sgd";  ///< "sgd" | "adam"
  double lr = 0.05;
  double momentum = 0.9;                          ///< sgd
  bool nesterov = false;                          ///< sgd
  double weight_decay = 0.0;                      ///< L2 added to the gradient (both optimizers)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  ///< adam
};

struct LrScheduleConfig {
  std::string name = "cosine";  ///< "constant" | "step" | "cosine"
  int64_t step_size = 10;       ///< step: epochs between decays
  double gamma = 0.1;           ///< step: decay factor
  double min_lr = 0.0;          ///< cosine: final LR
  int64_t warmup_epochs = 0;    ///< linear warm-up from lr/10 over these epochs
};

struct TrainConfig {
  int64_t epochs = 10;
  int64_t batch_size = 128;
  int64_t eval_batch_size = 1000;
  OptimizerConfig optimizer;
  LrScheduleConfig lr_schedule;
};

struct RunConfig {
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 1;
  std::string algorithm = "float";
  DataConfig data;
  json network = json{{"type", "mlp"}};
  TrainConfig train;
  /// The algorithm's own section under its name (e.g. {"inq": {...}}), resolved by its spec
  /// (inner/algorithms/registry.h); empty for algorithms without one.
  json algorithm_sections = json::object();

  /// The algorithm's section ({} when there is none or it was not given).
  json section() const { return algorithm_sections.value(algorithm, json::object()); }

  /// The fully resolved document (all defaults filled), as saved to config.json.
  json to_json() const;
};

/// Parses and validates a config document (see the top of this file). Errors are
/// c10::ValueError naming the key path and rule.
RunConfig parse_run_config(const json& j);

/// Learning rate of epoch `epoch` (0-based) under `cfg` (pure function: resumable).
double lr_at_epoch(const TrainConfig& cfg, int64_t epoch);

/// Loads the data the config names: {train (minus val, subset applied), val, test}, normalized
/// with training statistics, moved to `device`.
data::Splits load_data(const RunConfig& cfg, torch::Device device);
/// The two halves of load_data, so that callers running many configs on the same files (meta-
/// training) read the files once: load_raw_data reads/generates {train (all), test} (it depends
/// only on cfg.data, and on cfg.seed for synthetic data); prepare_data splits, subsets and
/// normalizes a copy of them for `cfg` (the raw tensors are not modified).
data::Splits load_raw_data(const RunConfig& cfg);
data::Splits prepare_data(const RunConfig& cfg, data::Splits raw, torch::Device device);
/// The size rules prepare_data applies, for `train_samples` raw training samples (c10::ValueError
/// naming the field otherwise); returns the number of training samples after the split and
/// subset.
int64_t check_data_sizes(const DataConfig& d, int64_t train_samples);

}  // namespace qsched::inner
