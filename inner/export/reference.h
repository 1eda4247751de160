#pragma once
// Reference inference of an exported network (.qsx, inner/export/format.h), written with Eigen
// and independent of LibTorch: it reads only the export file and reproduces the hardened
// network's forward pass (inner/network.cpp) in eval mode.
//
//   read_export_file(path) --ReferenceNet(model)--> net.logits(raw pixels, n) -> [n, K]
//
// What it computes (per network type, exactly the order of inner/network.cpp):
//   mlp:    [fc -> (bn) -> relu]* -> out
//   lenet:  [conv5x5 -> relu -> maxpool2]* -> flatten -> [fc -> relu]* -> out
//   vgg:    [conv3x3 pad 1 -> bn -> relu | maxpool2]* -> flatten -> [fc -> relu]* -> out
//   resnet: conv -> bn -> relu -> blocks -> global average pool -> out, a block being
//           relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = bn(conv1x1(x)) or x
// with the raw pixels first normalized as the header says: x' = (x - mean[c]) / std[c].
//
// Arithmetic. A quantized layer's weights are W = 2^n2 · Q with Q integer-valued:
// Q = sign · 2^(k - n2), i.e. 0 or ±1, ±2, .., ±2^(n1-n2) (ternary: 0, ±1). A layer computes
//   y = ldexp(Q · x, n2) + bias
// so every product Q_ij·x_j is x_j shifted by (k - n2) binary places (exact in float32), and
// the only scaling is one exact shift by n2 per layer: what a shift-based accelerator does.
// Activations stay float32 (INQ quantizes weights only); sums are float32 in Eigen's GEMM order,
// so logits differ from LibTorch's (another summation order) by float rounding only (about
// 1e-6 relative; predictions differ only on exact near-ties).
//
// ANA networks (format version 2, "quantizers" in the header). A level-coded layer holds the
// levels q_j (integers for the built-in binary / ternary / b-bit levels) and computes
//   y = (Q · x) · (eps_w · s_x) + bias
// where the input x is carried as x_true = s_x · x: s_x = 1 for float activations, and s_x = eps_a
// after an ANA activation quantizer, which outputs the level values q_j themselves
// (j = #{i : x >= eps_a · theta_i}, thresholds compared in float32) instead of a ReLU. Between
// two quantized layers the products Q·q are then small integers, summed exactly in float32 (up
// to 2^24), and the only non-integer arithmetic is one rescale per layer: what an integer /
// ternary accelerator does. Ops that commute with a positive scale (ReLU, max-pool, flatten)
// keep s_x; BatchNorm, residual additions, average pooling and the logits apply it first.
// LibTorch computes the same network as float32 products (eps_w q)(eps_a q'): logits differ by
// float rounding only, and a hidden unit can flip only when its pre-activation is within
// rounding of a threshold. BatchNorm is folded as LibTorch
// does in eval mode: alpha = weight / sqrt(running_var + eps), beta = bias - running_mean·alpha,
// y = x·alpha + beta. Convolutions are im2col + GEMM; max-pool 2x2 stride 2 (floor); the
// flatten order is PyTorch's NCHW.
//
// Errors (ExportError, one line naming the source): records missing or extra for the
// architecture, wrong shapes, a bad network spec in the header, non-finite float parameters.
// No torch includes here or in reference.cpp.
#include <Eigen/Dense>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "inner/export/format.h"

namespace qsched::inner::xport {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Raw images as the datasets store them before normalization.
struct RawImages {
  int64_t n = 0, channels = 0, height = 0, width = 0;
  std::vector<float> pixels;    ///< n·C·H·W values uint8 / 255 in [0, 1], NCHW row-major
  std::vector<int64_t> labels;  ///< n labels
  std::string source;           ///< the files read, for messages
};

/// Reads the test split of a data directory, torch-free: an MNIST-layout IDX directory
/// (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz; raw preferred) or a
/// CIFAR-10 binary directory (test_batch.bin). Bad files are ExportErrors naming the file.
RawImages read_test_images(const std::string& dir);

/// Bounds on the input geometry an export header may announce, checked before any buffer is
/// sized from it (the zoo's largest input is 3x32x32).
inline constexpr int64_t kMaxInputSide = 4096;
inline constexpr int64_t kMaxInputSize = int64_t{1} << 24;  ///< C*H*W
inline constexpr int64_t kMaxClasses = 65536;

class ReferenceNet {
 public:
  /// Builds the network from the header's spec and the records; `source` names the file in
  /// error messages.
  explicit ReferenceNet(const ExportModel& m, const std::string& source = "export");

  int64_t channels() const { return c_; }
  int64_t height() const { return h_; }
  int64_t width() const { return w_; }
  int64_t num_classes() const { return classes_; }
  /// C·H·W.
  int64_t input_size() const { return c_ * h_ * w_; }

  /// Logits [n, K] of n raw images (input_size() floats each, in [0, 1], NCHW); normalizes them
  /// with the header's mean/std first. Processes `batch` images at a time.
  RowMatrix logits(const float* raw, int64_t n, int64_t batch = 256) const;
  /// Logits of already normalized inputs.
  RowMatrix logits_normalized(const float* x, int64_t n, int64_t batch = 256) const;
  /// Row-wise argmax (first maximum on ties, like torch::argmax).
  static std::vector<int64_t> argmax(const RowMatrix& logits);

  /// Number of weights stored as codes (power-of-two or level codes), and as float32 (float
  /// layers, biases, BN).
  int64_t coded_weights() const { return coded_; }
  int64_t float_values() const { return floats_; }
  /// Hidden activations that are ANA quantizers (0 for INQ networks).
  int64_t quantized_activations() const { return static_cast<int64_t>(act_q_.size()); }
  /// One line: network type, layers, bits.
  std::string describe() const;

 private:
  /// A Linear or Conv2d layer; Linear is a 1x1 "conv" on a 1x1 map with cin = in features.
  struct Dense {
    std::string name;
    bool conv = false;
    int64_t cin = 0, cout = 0, k = 1, stride = 1, pad = 0;
    RowMatrix w;           ///< [cout, cin·k·k]; coded layers: the integers Q (or the levels)
    float scale = 1.0f;    ///< output scale: 2^n2 (pow2 codes), eps_w (level codes), 1 (float)
    int bits = 32;         ///< 32 = float layer
    bool levels = false;   ///< level codes (ANA)
    Eigen::VectorXf bias;  ///< empty when the layer has no bias
  };
  struct Affine {  ///< BatchNorm in eval mode, folded
    Eigen::VectorXf alpha, beta;
  };
  /// An ANA activation quantizer: y = eps · q_j, j = #{i : x >= thresholds_i} (thresholds
  /// already times eps, in float32); the output is carried as levels with scale eps.
  struct ActQuant {
    std::vector<float> levels, thresholds;
    float eps = 1.0f;
  };
  enum class Op { kDense, kAffine, kAct, kMaxPool, kFlatten, kBlock, kGlobalAvgPool };
  struct Step {
    Op op;
    size_t index = 0;  ///< into dense_, affine_, blocks_, or the activation number (kAct)
  };
  /// act(main(x) + shortcut(x)); an empty shortcut is the identity.
  struct Block {
    std::vector<Step> main, shortcut;
    size_t act = 0;  ///< activation number after the addition
  };
  /// Activations of a batch: the true values are scale · x, x [n, c·h·w] (rows NCHW-flattened).
  struct Act {
    int64_t c = 0, h = 0, w = 0;
    RowMatrix x;
    float scale = 1.0f;
    /// x <- scale · x, scale <- 1.
    void materialize();
  };
  /// Shape bookkeeping while building.
  struct Shape {
    int64_t c = 0, h = 1, w = 1;
  };

  // Building (checks each record against the architecture and marks it used).
  Step add_conv(const std::string& name, Shape& s, int64_t cout, int64_t k, int64_t stride,
                int64_t pad, bool bias, bool linear = false);
  Step add_linear(const std::string& name, Shape& s, int64_t out, bool bias);
  Step add_bn(const std::string& name, const Shape& s);
  /// The next hidden activation (forward order): ReLU, or its ANA quantizer from the header.
  Step add_act();
  /// Reads header "quantizers" (version 2) into weight_q_ / act_q_.
  void read_quantizers(const json& q);
  const Record& take(const std::string& name, const std::vector<int64_t>& dims, bool allow_codes);
  std::vector<float> floats(const std::string& name, int64_t n);
  [[noreturn]] void fail(const std::string& what) const;

  void run(const std::vector<Step>& steps, Act& a) const;
  void dense(const Dense& d, Act& a) const;
  void activation(size_t index, Act& a) const;

  std::string src_;
  const ExportModel* model_ = nullptr;  ///< only during construction
  std::vector<bool> used_;
  std::string type_;
  int64_t c_ = 0, h_ = 0, w_ = 0, classes_ = 0;
  std::vector<float> mean_, std_;
  double eps_ = 1e-5;
  std::vector<Dense> dense_;
  std::vector<Affine> affine_;
  std::vector<Block> blocks_;
  std::vector<Step> steps_;
  int64_t coded_ = 0, floats_ = 0;
  /// Level-code weight quantizers by record name: levels and eps (building only).
  struct WeightQuant {
    std::vector<double> levels;
    double eps = 1.0;
    bool used = false;
  };
  std::map<std::string, WeightQuant> weight_q_;
  std::map<size_t, ActQuant> act_q_;  ///< by activation number
  size_t acts_ = 0;                   ///< hidden activations built so far
};

}  // namespace qsched::inner::xport
