#pragma once
// The LibTorch side of `qsched export`: from a finished INQ or ANA run to an export file
// (format: inner/export/format.h), and the check that the torch-free reference inference
// (inner/export/reference.h) reproduces the LibTorch network.
//
//   run dir --load_finished_quantized_run--> LoadedRun {config, summary, trainer at the last epoch,
//                                                  raw test images, normalization}
//           --export_network--> ExportModel --write_export_file--> FILE (binary)
//                                           --write_inspection_json--> FILE.json
//   compare_with_torch(net, ReferenceNet(model), raw test, normalized test) -> Agreement
//
// Errors a user can act on (not a finished INQ/ANA run, weights off the codebook or grid,
// a bad run directory) are c10::ValueError with one line; the CLI maps them to exit code 2.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "inner/config.h"
#include "inner/export/format.h"
#include "inner/export/reference.h"
#include "inner/trainer.h"

namespace qsched::inner::xport {

/// The per-channel normalization a run applied to its data: x' = (x - mean) / std with the
/// training split's statistics (data::Normalizer::fit), or mean 0, std 1 without normalization.
struct Normalization {
  std::vector<float> mean, std;
};

/// What inner::load_data does, in two halves: the raw splits (pixels in [0, 1]) and the
/// normalized ones, bit-identical to load_data(cfg, device), plus the statistics.
struct RunData {
  data::Splits raw, normalized;
  Normalization norm;
};
RunData load_run_data(const RunConfig& cfg, torch::Device device);

/// Builds the export of a trained network whose algorithm is INQ or ANA (format version 2).
/// INQ: every INQ layer's weight as pow2 codes (each weight must be exactly 0 or ±2^k,
/// n2 <= k <= n1, of the layer's codebook). ANA: every quantized layer's weight as level codes
/// (each weight float(eps_w · q_j) within a few float roundings) with levels and eps_w in the
/// header's "quantizers", plus the quantized activations (levels, thresholds, eps_a). All other
/// parameters and BatchNorm buffers as float32 (num_batches_tracked is dropped). `source` goes
/// to the header's "source" (informational).
/// Refuses (ValueError): another algorithm, an INQ layer not started, an ANA run not finished
/// (not hardened, dynamic scale), a weight off its codebook/grid, unknown transforms.
ExportModel export_network(Trainer& t, const Normalization& norm, const json& source = {});

/// A finished INQ or ANA run, loaded at its final checkpoint.
struct LoadedRun {
  RunConfig cfg;
  json summary;
  data::Dataset raw_test;         ///< test images before normalization
  data::Dataset normalized_test;  ///< what the network saw
  Normalization norm;
  std::unique_ptr<Trainer> trainer;
};
/// Loads <dir>/config.json, summary.json and checkpoint.pt. ValueError (one line, naming the
/// directory) unless the run is an INQ or ANA run that completed all its epochs with
/// summary.json "quantized" and "on_grid" true.
LoadedRun load_finished_quantized_run(const std::string& dir);

/// Writes the binary file atomically; returns its size in bytes.
uint64_t write_export_file(const std::string& path, const ExportModel& m);
/// Writes to_inspection_json(m) atomically: the header indented, one record per line.
void write_inspection_json(const std::string& path, const ExportModel& m);

/// Reference inference against LibTorch on one dataset.
struct Agreement {
  int64_t n = 0;
  int64_t same_predictions = 0;     ///< argmax identical
  double max_abs_logit_diff = 0.0;  ///< over all samples and classes
  double max_abs_logit = 0.0;       ///< LibTorch's largest |logit| (the scale of the diff)
  double torch_acc = 0.0, reference_acc = 0.0;
  /// Samples with some |logit diff| > rel_tol · (1 + max_abs_logit) (rel_tol of
  /// compare_with_torch). With ANA activation quantizers a pre-activation within float rounding
  /// of a threshold can take the other level, which moves that sample's logits by a quantum.
  int64_t samples_outside_tol = 0;
  double agreement() const { return n ? static_cast<double>(same_predictions) / n : 1.0; }
};
/// Runs `net` (eval mode, no grad) on `normalized` and `ref` on `raw` (same samples).
Agreement compare_with_torch(NetworkImpl& net, const ReferenceNet& ref, const data::Dataset& raw,
                             const data::Dataset& normalized, int64_t batch_size = 1000,
                             double rel_tol = 1e-4);

}  // namespace qsched::inner::xport
