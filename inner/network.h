#pragma once
// The network zoo: networks built from a JSON spec, with every quantizable layer (Linear,
// Conv2d) enumerated in forward order.
//
//   spec (JSON) --build_network(spec, input shape, classes)--> Network
//       network->forward(x)        logits [N, classes]
//       network->quant_layers()    QuantLayerInfo per Linear/Conv2d, in forward order
//       network->layer(i)          the QuantLayer module i (weight, bias, weight hook)
//       network->activations()     hidden activation modules, in forward order
//       network->activation(i)     activation i, non-const (set_transform)
//
// Spec types and their defaults (unknown keys are errors, see JsonReader; spec() returns the
// spec with every default filled in, and rebuilding from it gives the same architecture):
//   {"type": "mlp",    "hidden": [256], "batchnorm": false}
//       flatten -> [fc_i -> (BatchNorm1d) -> act_i]* -> out.  "hidden": [] = logistic regression.
//   {"type": "lenet",  "channels": [6, 16], "fc": [120, 84]}
//       LeNet-5 style: [conv5x5 -> act -> maxpool2]* -> [fc -> act]* -> out. The first conv has
//       padding 2 when the input is smaller than 32 (28x28 MNIST behaves like 32x32: 16x5x5).
//   {"type": "vgg",    "blocks": [32, "M", 64, "M", 128, "M"], "fc": [256]}
//       [conv3x3 pad 1 -> BatchNorm2d -> act | "M" = maxpool2]* -> [fc -> act]* -> out.
//   {"type": "resnet", "depth": 8, "width": 16}
//       CIFAR ResNet (He et al. 2016, sec. 4.2), depth = 6n+2 >= 8: stem conv3x3 -> BN -> act,
//       3 stages of n basic blocks (widths w, 2w, 4w; stride 2 at the first block of stages 2
//       and 3), 1x1 conv + BN projection shortcut where the shape changes, global average pool,
//       out. Basic block: act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x)).
// A conv/linear layer followed by BatchNorm has no bias (BN's shift replaces it); the others
// have one. Weights use PyTorch's default init (kaiming_uniform a = sqrt(5), U(+-1/sqrt(fan_in))
// for the bias). Inputs must be [N, C, H, W] with the C, H, W the network was built for.
//
// Forward order (the order of quant_layers(), layer(i), activations()):
//   the order in which forward() applies the modules; in a residual block: conv1, conv2, then
//   the shortcut conv (if any); activations: act1, then act2 (after the addition).
//   The output layer is always last (rel_depth 1) and has no activation after it.
// Module paths (QuantLayerInfo::name; "<name>.weight" is the key in named_parameters()):
//   mlp:    fc1, bn1, act1, ..., out
//   lenet:  features.conv<i>, features.act<i>, classifier.fc<j>, classifier.act<j>,
//           classifier.out
//   vgg:    features.conv<i>, features.bn<i>, features.act<i>, classifier.fc<j>,
//           classifier.act<j>, classifier.out                (i counts convs, not "M" entries)
//   resnet: stem.{conv,bn,act}, stage<s>.block<b>.{conv1,bn1,act1,conv2,bn2,shortcut.conv,
//           shortcut.bn,act2}, classifier.out                (s, b, i, j count from 1)
// Hidden activations are always Activation modules; BatchNorm stays torch::nn::BatchNorm1d/2d.
//
// Quantization hooks (used by inner/inq and inner/ana; float training leaves them empty):
//   QuantLayer::set_weight_transform(f): forward uses f(weight) instead of weight (f must keep
//       the shape; gradients flow through f to weight).
//   Activation::set_transform(f): forward uses f(x) instead of the activation function.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "inner/base/json_reader.h"

namespace qsched::inner {

/// Size limits of a network spec, checked before anything is allocated (exit 2 naming the key).
inline constexpr int64_t kMaxLayerWidth = 65536;  ///< hidden widths, channels
inline constexpr size_t kMaxListLength = 256;     ///< entries of hidden/fc/channels/blocks
inline constexpr int64_t kMaxResnetDepth = 1202;  ///< the deepest CIFAR ResNet (6n+2)
inline constexpr int64_t kMaxInputSide = 4096;    ///< channels, height, width of the input
inline constexpr int64_t kMaxLayerWeights = int64_t{1} << 26;    ///< one layer (256 MiB)
inline constexpr int64_t kMaxNetworkWeights = int64_t{1} << 27;  ///< the network (512 MiB)

enum class LayerKind { kLinear, kConv2d };
std::string to_string(LayerKind k);

/// Metadata of one quantizable layer; the schedule controller and per-layer quantizers use it.
struct QuantLayerInfo {
  int64_t index = 0;  ///< position among quantizable layers, forward order, from 0
  std::string name;   ///< module path, e.g. "features.conv1"
  LayerKind kind = LayerKind::kLinear;
  int64_t fan_in = 0;   ///< in_features, or in_channels * kh * kw
  int64_t fan_out = 0;  ///< out_features, or out_channels
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t numel = 0;             ///< number of weights (bias excluded)
  double rel_depth = 0.0;        ///< index / (L - 1), 0 for the first layer, 1 for the last
  int64_t out_h = 1, out_w = 1;  ///< output spatial size for the build input (1 for Linear);
                                 ///< filled by build_network with one dry forward pass
};

using TensorFn = std::function<torch::Tensor(const torch::Tensor&)>;

/// A Linear or Conv2d layer whose forward weight can be replaced by a transform of it.
class QuantLayerImpl : public torch::nn::Module {
 public:
  /// Linear: in -> out. Conv2d: in channels -> out channels, square kernel, stride, padding.
  static std::shared_ptr<QuantLayerImpl> linear(int64_t in, int64_t out, bool bias = true);
  static std::shared_ptr<QuantLayerImpl> conv2d(int64_t in, int64_t out, int64_t kernel,
                                                int64_t stride, int64_t padding, bool bias);
  QuantLayerImpl(LayerKind kind, int64_t in, int64_t out, int64_t kernel, int64_t stride,
                 int64_t padding, bool bias);

  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& os) const override;
  /// The weight the forward pass uses (transform applied), e.g. for export or inspection.
  torch::Tensor effective_weight();

  void set_weight_transform(TensorFn f) { transform_ = std::move(f); }
  void clear_weight_transform() { transform_ = nullptr; }

  LayerKind kind() const { return kind_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }

  torch::Tensor weight;  ///< Linear [out, in]; Conv2d [out, in, k, k]
  torch::Tensor bias;    ///< [out] or undefined

 private:
  LayerKind kind_;
  int64_t stride_ = 1, padding_ = 0;
  TensorFn transform_;
};
TORCH_MODULE(QuantLayer);

/// A hidden activation (ReLU by default) that a quantizer can replace.
class ActivationImpl : public torch::nn::Module {
 public:
  ActivationImpl() = default;
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& os) const override;
  void set_transform(TensorFn f) { transform_ = std::move(f); }
  void clear_transform() { transform_ = nullptr; }
  bool has_transform() const { return static_cast<bool>(transform_); }

 private:
  TensorFn transform_;
};
TORCH_MODULE(Activation);

/// Input geometry of a dataset.
struct InputShape {
  int64_t channels = 1, height = 28, width = 28;
};

/// A network of the zoo. Concrete architectures derive from it.
class NetworkImpl : public torch::nn::Module {
 public:
  virtual ~NetworkImpl() = default;
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

  const std::vector<QuantLayerInfo>& quant_layers() const { return infos_; }
  int64_t num_quant_layers() const { return static_cast<int64_t>(layers_.size()); }
  QuantLayer& layer(int64_t i) { return layers_.at(i); }
  const std::vector<Activation>& activations() const { return activations_; }
  /// Activation i (non-const, to set a transform; copies of a holder share the module too).
  Activation& activation(int64_t i) { return activations_.at(i); }
  /// The spec the network was built from, with defaults filled in.
  const json& spec() const { return spec_; }

 protected:
  /// Registers a quantizable layer; call in forward order.
  QuantLayer add_quant_layer(const std::string& name, QuantLayer layer);
  /// Registers a hidden activation; call in forward order.
  Activation add_activation(const std::string& name);
  /// Fills rel_depth once all layers are registered.
  void finalize(json spec);

  std::vector<QuantLayer> layers_;
  std::vector<QuantLayerInfo> infos_;
  std::vector<Activation> activations_;
  json spec_;
};

using Network = std::shared_ptr<NetworkImpl>;

/// Builds a network from a spec (validated strictly; errors are c10::ValueError naming
/// "network.<key>"). Weights are initialized from the current torch global generator (seed it
/// first for reproducibility).
Network build_network(const json& spec, const InputShape& input, int64_t num_classes);

/// Names of the registered network types ("lenet", "mlp", "resnet", "vgg").
std::vector<std::string> network_types();

/// Number of parameters (all, float) of a module.
int64_t count_parameters(torch::nn::Module& m);

}  // namespace qsched::inner
