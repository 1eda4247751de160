#pragma once
// INQ: incremental network quantization (Zhou et al., "Incremental Network Quantization:
// Towards Lossless CNNs with Low-Precision Weights", ICLR 2017, arXiv 1702.03044).
//
// Per quantizable layer l, with s = max|W_l| taken when INQ starts and bit-width b >= 2:
//   n1 = floor(log2(4s/3)),  n2 = n1 + 1 - 2^(b-2)                       (paper Sec. 2.1)
//   P_l = {0, ±2^n2, ..., ±2^n1}: 2^(b-1) + 1 levels (b = 2: ternary {0, ±2^n1})
// Projection (paper Eq. 4), nearest level in the linear domain: with adjacent non-negative
// levels a < c, |w| in [(a+c)/2, 3c/2) -> c·sgn(w); |w| < 2^(n2-1) -> 0.
//   Tie rule: an interval includes its lower bound, so a weight exactly midway between two
//   levels goes to the larger magnitude (away from zero).
//   Saturation: |w| >= 3·2^n1/2 cannot occur at the start (n1 is chosen so that s < 3·2^n1/2)
//   but can after retraining; Eq. 4 read literally maps it to 0, we map it to 2^n1·sgn(w).
//
// Each epoch t the schedule gives a target fraction f_l(t); the layer then has exactly
// round(f_l(t)·n_l) frozen weights. New weights to freeze are picked among the still-float
// ones by the partition strategy:
//   magnitude            largest |w| first (the paper's pruning-inspired default)
//   random               a uniformly random subset (seeded by (seed, layer, epoch))
//   random-repartition   every epoch all weights are re-partitioned at random: a random
//                        round(f·n) of them show their projection, the others train from
//                        their latent float value (random partition relaxation, Cavigelli &
//                        Benini 2020). Frozen values are not persistent in this mode.
// Frozen weights keep their projected value: after every optimizer step the trainable mask
// restores them (w = w·m + q), so momentum, weight decay and Adam state cannot move them.
//
//   epoch start: f = schedule(t) -> freeze more (partition) -> [reset LR] [reset optimizer]
//   every step:  backward, optimizer step, restore frozen values
//   end:         every quantized weight is on its codebook (checked: on_grid)
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "inner/algorithms/registry.h"
#include "inner/algorithms/scheduled.h"

namespace qsched::inner::inq {

/// The power-of-two codebook of one layer.
struct Codebook {
  int bits = 5;
  int64_t n1 = 0, n2 = 0;
  /// From s = max|W| > 0 and bits in [2, 8] (the paper's rule).
  static Codebook from_max(double s, int bits);
  /// With a given top exponent n1 (n2 follows from bits).
  static Codebook with_n1(int64_t n1, int bits);
  /// Number of levels, 2^(bits-1) + 1 (zero and the signed powers of two).
  int64_t num_levels() const { return 2 * (n1 - n2 + 1) + 1; }
  /// Sorted non-negative levels {0, 2^n2, ..., 2^n1}.
  std::vector<double> magnitudes() const;
};

/// Eq. 4 projection of `w` onto `cb` (elementwise, any shape, same dtype/device).
torch::Tensor project(const torch::Tensor& w, const Codebook& cb);
/// Largest |w - project(w)| over the tensor (0 when every weight is on the codebook).
double max_grid_distance(const torch::Tensor& w, const Codebook& cb);

enum class Partition { kMagnitude, kRandom, kRandomRepartition };
Partition partition_from_string(const std::string& s);
std::string to_string(Partition p);

/// How n1 is chosen when INQ starts.
///   paper      n1 = floor(log2(4·max|W|/3)) (Zhou et al. 2017), the default
///   min-error  the n1 in [n1_paper - 4, n1_paper] that minimizes ||W - Q(W)||² of the layer
///              at INQ start (an extension: for 2-3 bits the paper's rule zeroes every weight
///              below 2^(n1-1) ~ max|W|/2, i.e. most of a layer)
enum class CodebookRule { kPaper, kMinError };

/// The "inq" config section:
/// {"bits": 5, "partition": "magnitude", "codebook": "paper",
///  "schedule": {"family": "inq_paper", ...},
///  "pretrain_epochs": 0, "init_checkpoint": "", "exclude": [], "reset_lr": false,
///  "reset_optimizer": false}
struct InqOptions {
  int bits = 5;  ///< b in [2, 8]: 2^(b-1)+1 levels
  Partition partition = Partition::kMagnitude;
  CodebookRule codebook = CodebookRule::kPaper;
  json schedule = json{{"family", "inq_paper"}, {"bits", 5}, {"epochs_per_step", 1}};
  int64_t pretrain_epochs = 0;       ///< float epochs before INQ starts, inside this run
  std::string init_checkpoint;       ///< start from the model of this checkpoint.pt (float run)
  std::vector<std::string> exclude;  ///< layers kept float: "first", "last", or an index
  bool reset_lr = false;             ///< at each fraction increase, restart the LR schedule
  bool reset_optimizer = false;      ///< at each fraction increase, clear momentum/Adam state

  /// Parses and validates the section (strict keys; errors name "inq.<key>").
  static InqOptions from_json(const json& section);
  json to_json() const;
  /// The options the shared skeleton reads (inner/algorithms/scheduled.h).
  ScheduledOptions scheduled() const;
};

/// INQ as a trainer Algorithm (the schedule skeleton is ScheduledAlgorithm's).
class InqAlgorithm : public ScheduledAlgorithm {
 public:
  /// Parses cfg's "inq" section. `schedule` (optional) replaces its schedule (make_algorithm).
  explicit InqAlgorithm(const RunConfig& cfg, std::unique_ptr<sched::Schedule> schedule = nullptr);
  InqAlgorithm(InqOptions opt, std::unique_ptr<sched::Schedule> schedule);
  std::string name() const override { return "inq"; }
  void after_step(Trainer& t) override;
  void finish(Trainer& t, json& summary) override;
  json epoch_extra(Trainer& t) override;

  /// Per quantized layer state (exposed for tests and export).
  struct Layer {
    int64_t index = 0;  ///< network layer index
    Codebook codebook;
    torch::Tensor trainable;      ///< 1 where the weight still trains, 0 where frozen
    torch::Tensor frozen_values;  ///< projected values where frozen, 0 elsewhere
    torch::Tensor latent;         ///< random-repartition only: latent float weights
    int64_t frozen = 0;           ///< number of frozen weights
    bool started = false;         ///< codebook fixed (INQ phase began)
  };
  const std::vector<Layer>& layers() const { return layers_; }
  const InqOptions& options() const { return opt_; }

 protected:
  const ScheduledOptions& scheduled_options() const override { return scheduled_; }
  void setup_units(Trainer& t, const std::vector<int64_t>& layers) override;
  bool started() const override { return layers_.front().started; }
  void start(Trainer& t) override;
  json observe_unit(Trainer& t, size_t j) override;
  void apply_values(Trainer& t, int64_t epoch, const std::vector<double>& f) override;
  void save_state(torch::serialize::OutputArchive& a) const override;
  void load_state(torch::serialize::InputArchive& a) override;

 private:
  void freeze_to(Trainer& t, Layer& l, double fraction, int64_t epoch);

  InqOptions opt_;
  ScheduledOptions scheduled_;
  std::vector<Layer> layers_;
  std::vector<double> last_fraction_;
};

/// The registry entry of "inq" (registered by inner/algorithms/builtin.cpp).
inner::AlgorithmSpec spec();

}  // namespace qsched::inner::inq
