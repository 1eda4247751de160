#pragma once
// ANA: additive noise annealing (Spallanzani et al., "Additive Noise Annealing and
// Approximation Properties of Quantized Neural Networks", arXiv 1905.10452, 2019; follow-up
// "Training Quantised Neural Networks with STE Variants: the Additive Noise Annealing
// Algorithm", CVPR 2022, arXiv 2203.11323).
//
// ---------------------------------------------------------------------------------------------
// The quantizer (in units of the quantum eps, see "Scale" below)
//
//   levels q_0 < ... < q_K, thresholds theta_i = (q_{i-1} + q_i) / 2 (midway), i = 1..K
//   Q(x) = q_0 + sum_i dq_i H(x - theta_i),  dq_i = q_i - q_{i-1},  H(0) = 1 (x >= theta)
//
//   binary   {-1, +1}       theta = {0}
//   ternary  {-1, 0, +1}    theta = {-0.5, +0.5}
//   {"bits": b, "signed": true}    {-2^(b-1), ..., 2^(b-1) - 1}  (b >= 2)
//   {"bits": b, "signed": true, "balanced": true}   drops -2^(b-1): symmetric, 2^b - 1 levels
//   {"bits": b, "signed": false}   {0, ..., 2^b - 1}              (b >= 1; ReLU-like)
//   [q_0, ..., q_K]                explicit, strictly increasing
//
// Additive noise nu with density p and CDF F, symmetric around 0, native scale s:
//
//   family       native s means        p(u)                        F(u)                std
//   uniform      half-width of [-s,s]  1/(2s) on |u| < s           clamp((u/s+1)/2,0,1) s/sqrt3
//   triangular   half-width of [-s,s]  (1 - |u|/s)/s on |u| < s    piecewise quadratic  s/sqrt6
//   normal       standard deviation    exp(-u^2/2s^2)/(s sqrt(2pi)) (1 + erf(u/(s sqrt2)))/2  s
//   logistic     scale s               F(u)(1 - F(u))/s            sigmoid(u/s)         s pi/sqrt3
//
// A noise level sigma (what schedules give) is read under a parametrization:
//   "native": s = sigma                       (default; sigma is what the table above says)
//   "std":    s = sigma * std_to_native(f)    sigma is the standard deviation for every family
//             (uniform sqrt3, triangular sqrt6, normal 1, logistic sqrt3/pi): one sigma means
//             the same spread whatever the family.
// sigma is measured in units of the quantum eps, i.e. of the input grid of the quantizer.
//
// Forward, strategy (quantlab's three forward strategies):
//   expectation  E[Q(x + nu)] = q_0 + sum_i dq_i P(x + nu >= theta_i)
//                             = q_0 + sum_i dq_i F(x - theta_i)        (analytic, smooth)
//   mode         q_j with j = argmax_j pmf_j(x),
//                pmf_j = P(theta_j <= x + nu < theta_{j+1}) = F(x - theta_j) - F(x - theta_{j+1})
//                (theta_0 = -inf, theta_{K+1} = +inf; ties go to the lower level)
//   random       Q(x + nu) with one fresh nu per element: a sample of the level distribution
// Backward, whatever the forward strategy: the derivative of the expectation
//   dE/dx = sum_i dq_i p_b(x - theta_i)
// under the backward noise (family f_b, scale s_b = max(ratio * sigma, floor) in the chosen
// parametrization). With s_b = 0 the gradient is 0 (what the 2019 paper warns about), hence
// the floor. Clipped straight-through estimator as a special case: uniform backward noise of
// half-width 0.5 on unit steps gives dE/dx = 1 on (theta_1 - 0.5, theta_K + 0.5) and 0
// elsewhere; for ternary levels that is the hardtanh STE on [-1, 1] (for binary levels, whose
// step is 2, the hardtanh STE is half-width 1). With forward uniform sigma = 0.5, ternary
// E[Q(x + nu)] = clamp(x, -1, 1): ANA training starts from a hardtanh network.
// sigma = 0 is the hard quantizer Q in every strategy. Evaluation always uses sigma = 0.
//
//     x --/eps--> u --+-- expectation: q0 + sum dq_i F((u - theta_i)/s_f) --+--*eps--> y
//                     +-- mode:   q[argmax_j pmf_j(u)] ----------------------+
//                     +-- random: Q(u + nu) ---------------------------------+
//     dL/dx = dL/dy * sum_i dq_i p_b(u - theta_i)              (s_b = max(ratio sigma, floor))
//   (A fixed eps is not applied to x: the operator runs on the grid eps * levels with noise
//   eps * s, which is the same function without the two extra passes over x.)
//
// ---------------------------------------------------------------------------------------------
// Scale (the quantum eps), per layer and per activation:
//   weights:      Q_w(W) = eps_w Q(W / eps_w)
//   activations:  Q_a(x) = eps_a Q(x / eps_a)   (replaces the ReLU after the layer)
//   "mean_abs":   eps = m * mean|.|    default for binary (m = 1: XNOR-Net's optimal binary
//                 scale) and ternary (m = 1.4: thresholds at 0.7 mean|W|, the TWN rule of
//                 Li et al. 2016, and eps ~ TWN's optimal ternary scale for uniform weights)
//   "max_abs":    eps = m * max|.| / max_j |q_j|  (default for other levels, m = 1: the
//                 extreme levels reach the largest value)
//   a number:     eps fixed to that value
//   weights, "scale_update": "dynamic" (default for statistic rules) recomputes eps from the
//                 current weights at every forward pass (detached: no gradient through eps,
//                 as TWN does) and freezes it when the run finishes, so the hardened weights
//                 are on the grid of the final eps; "fixed" computes eps once when
//                 quantization starts. Fixed scales let the latent weights outgrow eps: on
//                 Fashion-MNIST (MLP 784-256-10, ternary weights and activations, 15
//                 epochs, seed 0) the first layer then ends with ~13% zeros (close to binary)
//                 and 84.6% test accuracy, against 88.3% with the dynamic scale.
// Statistics: weights from the layer's current weights (dynamic) or from its weights at the
// start of quantization (fixed, after any float pre-training); activations from their inputs on a
// calibration batch (the first `calibration_samples` training samples, in order), calibrated in
// forward order with every earlier quantizer (weights and activations) already in hard mode. The
// scales are saved in checkpoints. Learned scales are not implemented (the interface would take
// them as extra optimizer parameters).
//
// ---------------------------------------------------------------------------------------------
// Per-layer schedule. The schedule (schedules/, Quantity::kNoise) gives one sigma per
// scheduled unit l per epoch: unit l = quantizable layer l (not excluded; forward order) and
// the activations that follow it in the forward pass (the ones applied after layer l and
// before the next quantizable layer: e.g. MLP fc_i -> act_i, LeNet conv_i -> act_i).
//   weight noise of unit l:     sigma_l(t)
//   activation noise of unit l: activations.sigma_ratio * sigma_l(t)
// The trainer-side ScheduleDriver enforces sigma >= 0, non-increasing, 0 at the last epoch
// (rejected before training) and records <run>/schedule.json, which --schedule FILE replays.
// Biases (and BatchNorm) stay float.
//
// The "ana" config section (every key optional; unknown keys are errors):
// {
//   "weights":     {"levels": "ternary", "scale": "mean_abs", "scale_multiplier": 1.4,
//                   "scale_update": "dynamic"},
//   "activations": {"enabled": true, "levels": "ternary", "scale": "mean_abs",
//                   "scale_multiplier": 1.4, "sigma_ratio": 1.0},
//   "noise": "uniform",              // uniform | triangular | normal | logistic
//   "parametrization": "native",     // native | std
//   "strategy": "expectation",       // expectation | mode | random
//   "backward": {"noise": <forward family>, "ratio": 1.0, "floor": 0.5},
//   "schedule": {"family": "ana_window", "sigma0": 0.5, "layout": "sequential"},
//   "pretrain_epochs": 0,            // float epochs before ANA starts (inside this run)
//   "init_checkpoint": "",           // start from the model of a (float) checkpoint.pt
//   "calibration_samples": 1000,     // activation scale statistics
//   "exclude": []                    // units kept float: "first", "last", index or layer name
// }
//
// Timeline in the trainer: attach (validate against the network, build the schedule table;
// bad input fails here) -> float epochs [0, pretrain_epochs) -> at the first ANA epoch fix the
// scales -> each epoch: sigma_l(t) from the driver -> evaluation with sigma = 0 -> finish:
// the weights are replaced by their hard quantized values (on the grid eps_w * levels, checked).
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "inner/algorithms/registry.h"
#include "inner/algorithms/scheduled.h"
#include "inner/base/json_reader.h"

namespace qsched::inner::ana {

// ---------------------------------------------------------------------------------------------
// Quantizer levels

struct Levels {
  std::vector<double> values;      ///< q_0 < ... < q_K (K >= 1)
  std::vector<double> thresholds;  ///< theta_1 < ... < theta_K, midway between levels
  std::string name;                ///< "binary", "ternary", "int4", "uint2", "custom"

  static Levels binary();
  static Levels ternary();
  /// b-bit integer levels (see the top of this file); errors name `what`.
  static Levels uniform(int bits, bool is_signed, bool balanced,
                        const std::string& what = "levels");
  /// Explicit levels; strictly increasing, at least 2, finite.
  static Levels custom(std::vector<double> values, const std::string& what = "levels");
  /// "binary" | "ternary" | {"bits": b, "signed": s, "balanced": bal} | [q_0, ..., q_K].
  static Levels from_json(const json& j, const std::string& what);

  int64_t size() const { return static_cast<int64_t>(values.size()); }
  /// Levels and thresholds times eps: Q_eps(x) = eps Q(x / eps), and with noise scale eps s,
  /// E[Q_eps(x + eps nu)] = eps E[Q(x / eps + nu)] and its x-derivative is Q's at x / eps.
  Levels scaled(double eps) const;
  double max_abs() const;
  json to_json() const;  ///< {"name", "values", "thresholds"}
  /// The config form from_json reads back to these levels (name included): "binary",
  /// "ternary", {"bits", "signed", "balanced"} or the array of values.
  json config() const;
};

// ---------------------------------------------------------------------------------------------
// Noise families

enum class NoiseFamily { kUniform, kTriangular, kNormal, kLogistic };
NoiseFamily noise_family_from_string(const std::string& s);  ///< unknown -> c10::ValueError
std::string to_string(NoiseFamily f);
std::vector<std::string> noise_families();
/// Native scale per unit standard deviation: sqrt3, sqrt6, 1, sqrt3/pi.
double std_to_native(NoiseFamily f);

/// F(u) with native scale s > 0, elementwise.
torch::Tensor noise_cdf(NoiseFamily f, const torch::Tensor& u, double s);
/// p(u) with native scale s > 0, elementwise.
torch::Tensor noise_pdf(NoiseFamily f, const torch::Tensor& u, double s);
/// Samples of nu (native scale s >= 0) with the shape/dtype/device of `like`, from `gen`
/// (a CPU generator; samples are drawn on the CPU and moved to like's device).
torch::Tensor sample_noise(NoiseFamily f, const torch::Tensor& like, double s, at::Generator gen);

enum class Strategy { kExpectation, kMode, kRandom };
Strategy strategy_from_string(const std::string& s);  ///< unknown -> c10::ValueError
std::string to_string(Strategy s);
std::vector<std::string> strategies();

// ---------------------------------------------------------------------------------------------
// The operator (all vectorized torch ops; x in units of the quantum)

/// Q(x): the hard quantizer (sigma = 0).
torch::Tensor hard_quantize(const torch::Tensor& x, const Levels& lv);
/// E[Q(x + nu)], native scale s > 0 (s = 0: hard_quantize).
torch::Tensor expected_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s);
/// dE[Q(x + nu)]/dx = sum_i dq_i p(x - theta_i), native scale s (s = 0: zeros).
torch::Tensor expected_quantize_grad(const torch::Tensor& x, const Levels& lv, NoiseFamily f,
                                     double s);
/// grad * dE[Q(x + nu)]/dx (what the operator's backward returns; uniform noise masks grad
/// with fused hardtanh_backward calls, open windows (theta - s, theta + s)).
torch::Tensor expected_quantize_vjp(const torch::Tensor& grad, const torch::Tensor& x,
                                    const Levels& lv, NoiseFamily f, double s);
/// pmf of the output level: [K+1, x.sizes()...], sums to 1 over dim 0 (s > 0).
torch::Tensor level_pmf(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s);
/// q[argmax_j pmf_j(x)] (s = 0: hard_quantize).
torch::Tensor mode_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s);
/// Q(x + nu), one nu per element (s = 0: hard_quantize).
torch::Tensor random_quantize(const torch::Tensor& x, const Levels& lv, NoiseFamily f, double s,
                              at::Generator gen);

/// One application of the ANA quantizer; scales are native and >= 0.
struct QuantOp {
  const Levels* levels = nullptr;
  NoiseFamily forward_noise = NoiseFamily::kUniform;
  NoiseFamily backward_noise = NoiseFamily::kUniform;
  Strategy strategy = Strategy::kExpectation;
  double forward_scale = 0.0;   ///< s_f: 0 = hard forward
  double backward_scale = 0.0;  ///< s_b: 0 = zero gradient
  at::Generator gen;            ///< for Strategy::kRandom (defined CPU generator)
};

/// y = forward(x) per op.strategy, with the custom backward dL/dx = dL/dy * sum_i dq_i
/// p_b(x - theta_i) (a torch::autograd::Function: gradients flow to x only).
torch::Tensor ana_quantize(const torch::Tensor& x, const QuantOp& op);

// ---------------------------------------------------------------------------------------------
// Options

/// How a quantum eps is chosen (see "Scale" at the top).
struct ScaleOptions {
  std::string rule = "auto";  ///< "auto" | "mean_abs" | "max_abs" | "fixed"
  double multiplier = 0.0;    ///< m; 0 = the default for the levels (resolve())
  double value = 0.0;         ///< rule "fixed": eps
  /// Weights only: false = eps computed once when quantization starts ("scale_update":
  /// "fixed"); true = recomputed from the current weights at every forward pass, without a
  /// gradient through it ("dynamic", as TWN does), and frozen when the run finishes.
  /// AnaOptions' weight scale defaults to true.
  bool dynamic = false;
  /// Resolves "auto" and multiplier 0 for `lv` (binary/ternary: mean_abs with m = 1 / 1.4;
  /// others: max_abs with m = 1).
  ScaleOptions resolved(const Levels& lv) const;
  /// eps from a tensor of values (weights or activation inputs) under this rule.
  double compute(const torch::Tensor& x, const Levels& lv) const;
  /// The same as a detached 0-dim tensor on x's device (no host sync; rule != "fixed").
  torch::Tensor compute_tensor(const torch::Tensor& x, const Levels& lv) const;
  json to_json() const;
};

struct AnaOptions {
  static ScaleOptions dynamic_scale() {
    ScaleOptions s;
    s.dynamic = true;
    return s;
  }

  Levels weight_levels = Levels::ternary();
  ScaleOptions weight_scale = dynamic_scale();
  bool activations = true;  ///< quantize the hidden activations of scheduled units
  Levels activation_levels = Levels::ternary();
  ScaleOptions activation_scale;
  double activation_sigma_ratio = 1.0;  ///< sigma_act = ratio * sigma_l
  NoiseFamily noise = NoiseFamily::kUniform;
  bool std_parametrization = false;  ///< "std": sigma is the standard deviation
  Strategy strategy = Strategy::kExpectation;
  NoiseFamily backward_noise = NoiseFamily::kUniform;
  double backward_ratio = 1.0;  ///< sigma_b = max(ratio * sigma, floor)
  double backward_floor = 0.5;  ///< >= 0, same parametrization as sigma
  json schedule = json{{"family", "ana_window"}, {"sigma0", 0.5}, {"layout", "sequential"}};
  int64_t pretrain_epochs = 0;
  std::string init_checkpoint;
  int64_t calibration_samples = 1000;
  std::vector<std::string> exclude;  ///< "first", "last", an index, or a layer name

  /// Parses and validates the "ana" section (strict keys; errors name "ana.<key>").
  static AnaOptions from_json(const json& section);
  /// The quantizer settings as summaries report them (levels with values and thresholds,
  /// scales as rule objects).
  json to_json() const;
  /// The section with every default filled in, in the form from_json reads back to the same
  /// options (what a run's config.json records).
  json to_config() const;
  /// The options the shared skeleton reads (inner/algorithms/scheduled.h).
  ScheduledOptions scheduled() const;
  /// sigma (in the chosen parametrization) -> native scale of family f.
  double native(NoiseFamily f, double sigma) const {
    return std_parametrization ? sigma * std_to_native(f) : sigma;
  }
};

// ---------------------------------------------------------------------------------------------
// The algorithm

/// State one quantizer transform reads (shared with the lambda installed on the module).
struct QuantizerState {
  Levels levels;
  double eps = 1.0;            ///< the quantum (when not dynamic)
  bool dynamic = false;        ///< eps = scale.compute(x) at every call (weights, "dynamic")
  ScaleOptions scale;          ///< the resolved rule, for dynamic
  double forward_scale = 0;    ///< native s_f
  double backward_scale = 0;   ///< native s_b
  bool active = false;         ///< false: float (pre-training), identity / ReLU
  bool hard = false;           ///< evaluation: sigma = 0
  bool is_activation = false;  ///< inactive: ReLU (activation) or identity (weights)
  NoiseFamily forward_noise = NoiseFamily::kUniform, backward_noise = NoiseFamily::kUniform;
  Strategy strategy = Strategy::kExpectation;
  at::Generator gen;
  /// Calibration: when set, the transform stores its input here and quantizes in hard mode.
  torch::Tensor* capture = nullptr;

  /// eps Q(x / eps) under the current mode (hard when `hard` or `training` is false).
  torch::Tensor apply(const torch::Tensor& x, bool training) const;
  /// max |x - eps Q(x / eps)| (0 when x is on the grid of this quantizer).
  double grid_distance(const torch::Tensor& x) const;
};

/// ANA as a trainer Algorithm (the schedule skeleton is ScheduledAlgorithm's).
class AnaAlgorithm : public ScheduledAlgorithm {
 public:
  /// Parses cfg's "ana" section (bad input fails here, before data is loaded).
  /// `schedule` (optional) replaces the section's schedule (see make_algorithm).
  explicit AnaAlgorithm(const RunConfig& cfg, std::unique_ptr<sched::Schedule> schedule = nullptr);
  AnaAlgorithm(AnaOptions opt, std::unique_ptr<sched::Schedule> schedule);

  std::string name() const override { return "ana"; }
  void before_eval(Trainer& t) override { set_hard(true); }
  void after_eval(Trainer& t) override { set_hard(false); }
  void finish(Trainer& t, json& summary) override;
  json epoch_extra(Trainer& t) override;
  /// An AnaMlpFunction (inner/ana/differentiable.h).
  std::unique_ptr<DifferentiableRun> differentiable(Trainer& t) override;

  /// A scheduled unit: one quantizable layer and the activations that follow it.
  struct Unit {
    int64_t layer = 0;  ///< network layer index
    std::string name;
    std::shared_ptr<QuantizerState> weight;
    std::vector<int64_t> activations;  ///< network activation indices (quantized ones)
    std::vector<std::shared_ptr<QuantizerState>> act;
    double sigma = 0;  ///< current sigma (parametrized), for logs
  };
  const std::vector<Unit>& units() const { return units_; }
  const AnaOptions& options() const { return opt_; }
  bool started() const override { return started_; }

  /// Largest |w - eps Q(w / eps)| over the effective (hard) weights of every unit.
  double max_grid_distance(Trainer& t);

 protected:
  const ScheduledOptions& scheduled_options() const override { return scheduled_; }
  void setup_units(Trainer& t, const std::vector<int64_t>& layers) override;
  void start(Trainer& t) override;
  json observe_unit(Trainer& t, size_t j) override;
  void apply_values(Trainer& t, int64_t epoch, const std::vector<double>& sigma) override {
    set_sigma(sigma);
  }
  void save_state(torch::serialize::OutputArchive& a) const override;
  void load_state(torch::serialize::InputArchive& a) override;

 private:
  void set_sigma(const std::vector<double>& sigma);
  void set_hard(bool hard);
  std::vector<std::shared_ptr<QuantizerState>> all_states() const;

  AnaOptions opt_;
  ScheduledOptions scheduled_;
  std::vector<Unit> units_;
  at::Generator gen_;
  bool started_ = false;
  bool finished_ = false;      ///< weights hardened, dynamic scales frozen
  std::vector<double> sigma_;  ///< last sigma per unit (checkpointed: mid-epoch resume)
};

/// The registry entry of "ana" (registered by inner/algorithms/builtin.cpp).
inner::AlgorithmSpec spec();

}  // namespace qsched::inner::ana
