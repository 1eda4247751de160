#include "inner/network.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace qsched::inner {

std::string to_string(LayerKind k) {
  switch (k) {
    case LayerKind::kLinear:
      return "linear";
    case LayerKind::kConv2d:
      return "conv2d";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// QuantLayer, Activation

namespace {

/// What the build-time dry pass observes: the quantizable layers and activations in the order
/// forward() calls them, and each layer's output spatial size.
struct ForwardRecord {
  std::vector<const QuantLayerImpl*> layers;
  std::vector<std::pair<int64_t, int64_t>> out_hw;
  std::vector<const ActivationImpl*> activations;
};
/// Set only during build_network's dry pass (per thread); a null check per call otherwise.
thread_local ForwardRecord* t_record = nullptr;
/// Weights still allowed in the network build_network is building on this thread (null outside
/// it); every QuantLayer takes its size from it before allocating.
thread_local int64_t* t_weight_budget = nullptr;

}  // namespace

std::shared_ptr<QuantLayerImpl> QuantLayerImpl::linear(int64_t in, int64_t out, bool bias) {
  return std::make_shared<QuantLayerImpl>(LayerKind::kLinear, in, out, 1, 1, 0, bias);
}

std::shared_ptr<QuantLayerImpl> QuantLayerImpl::conv2d(int64_t in, int64_t out, int64_t kernel,
                                                       int64_t stride, int64_t padding, bool bias) {
  return std::make_shared<QuantLayerImpl>(LayerKind::kConv2d, in, out, kernel, stride, padding,
                                          bias);
}

QuantLayerImpl::QuantLayerImpl(LayerKind kind, int64_t in, int64_t out, int64_t kernel,
                               int64_t stride, int64_t padding, bool bias)
    : kind_(kind), stride_(stride), padding_(padding) {
  TORCH_CHECK_VALUE(in >= 1 && out >= 1, "QuantLayer: in = ", in, ", out = ", out,
                    ". Violated constraint: in >= 1 and out >= 1");
  std::vector<int64_t> shape{out, in};
  if (kind == LayerKind::kConv2d) {
    TORCH_CHECK_VALUE(kernel >= 1 && stride >= 1 && padding >= 0, "QuantLayer: kernel = ", kernel,
                      ", stride = ", stride, ", padding = ", padding,
                      ". Violated constraint: kernel >= 1, stride >= 1, padding >= 0");
    shape = {out, in, kernel, kernel};
  } else {
    TORCH_CHECK_VALUE(kernel == 1 && stride == 1 && padding == 0,
                      "QuantLayer: a linear layer has kernel 1, stride 1, padding 0");
  }
  // Sizes are checked before anything is allocated: one layer, then the network's budget.
  int64_t numel = 1;
  for (int64_t d : shape) {
    TORCH_CHECK_VALUE(!__builtin_mul_overflow(numel, d, &numel) && numel <= kMaxLayerWeights,
                      "network spec: a layer of shape ", c10::IntArrayRef(shape), " has more than ",
                      kMaxLayerWeights, " weights (the limit per layer)");
  }
  if (t_weight_budget) {
    TORCH_CHECK_VALUE(numel <= *t_weight_budget, "network spec: the network has more than ",
                      kMaxNetworkWeights, " weights (the limit per network)");
    *t_weight_budget -= numel;
  }
  // PyTorch's defaults for nn.Linear / nn.Conv2d: kaiming_uniform(a = sqrt(5)) gives
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight; the bias uses the same bound.
  weight = register_parameter("weight", torch::empty(shape));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight.numel() / out));
    this->bias = register_parameter("bias", torch::empty({out}));
    torch::NoGradGuard no_grad;
    this->bias.uniform_(-bound, bound);
  }
}

torch::Tensor QuantLayerImpl::effective_weight() {
  if (!transform_) return weight;
  torch::Tensor w = transform_(weight);
  TORCH_CHECK(w.defined() && w.sizes() == weight.sizes(),
              "QuantLayer: the weight transform must return a tensor of shape ", weight.sizes(),
              ", got ", w.defined() ? w.sizes() : c10::IntArrayRef{});
  return w;
}

torch::Tensor QuantLayerImpl::forward(const torch::Tensor& x) {
  const torch::Tensor w = effective_weight();
  torch::Tensor y = kind_ == LayerKind::kLinear ? torch::linear(x, w, bias)
                                                : torch::conv2d(x, w, bias, stride_, padding_);
  if (t_record) {
    t_record->layers.push_back(this);
    t_record->out_hw.emplace_back(y.dim() == 4 ? y.size(2) : 1, y.dim() == 4 ? y.size(3) : 1);
  }
  return y;
}

void QuantLayerImpl::pretty_print(std::ostream& os) const {
  os << "QuantLayer(" << to_string(kind_) << ", " << weight.size(1) << " -> " << weight.size(0);
  if (kind_ == LayerKind::kConv2d) {
    os << ", kernel=" << weight.size(2) << ", stride=" << stride_ << ", padding=" << padding_;
  }
  os << ", bias=" << (bias.defined() ? "true" : "false")
     << (transform_ ? ", weight transform)" : ")");
}

void ActivationImpl::pretty_print(std::ostream& os) const {
  os << (transform_ ? "Activation(transform)" : "Activation(relu)");
}

torch::Tensor ActivationImpl::forward(const torch::Tensor& x) {
  if (t_record) t_record->activations.push_back(this);
  return transform_ ? transform_(x) : torch::relu(x);
}

// ---------------------------------------------------------------------------------------------
// NetworkImpl helpers

namespace {

/// Registers `module` at a dotted path below `root` ("stage1.block1.conv1"), creating plain
/// container modules for the intermediate parts, so that parameter names follow the path.
void register_at(torch::nn::Module& root, const std::string& path,
                 std::shared_ptr<torch::nn::Module> module) {
  torch::nn::Module* parent = &root;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    TORCH_INTERNAL_ASSERT(!part.empty(), "bad module path '", path, "'");
    if (dot == std::string::npos) {
      parent->register_module(part, std::move(module));
      return;
    }
    const auto children = parent->named_children();
    const auto* found = children.find(part);
    std::shared_ptr<torch::nn::Module> child =
        found ? *found
              : parent->register_module(part, std::make_shared<torch::nn::Module>("Container"));
    parent = child.get();
    start = dot + 1;
  }
}

}  // namespace

QuantLayer NetworkImpl::add_quant_layer(const std::string& name, QuantLayer layer) {
  TORCH_INTERNAL_ASSERT(layer, "add_quant_layer(", name, "): empty layer");
  register_at(*this, name, layer.ptr());
  const torch::Tensor& w = layer->weight;
  QuantLayerInfo info;
  info.index = static_cast<int64_t>(layers_.size());
  info.name = name;
  info.kind = layer->kind();
  info.fan_out = w.size(0);
  info.fan_in = w.numel() / w.size(0);
  if (info.kind == LayerKind::kConv2d) {
    info.kernel_h = w.size(2);
    info.kernel_w = w.size(3);
  }
  info.numel = w.numel();
  layers_.push_back(layer);
  infos_.push_back(std::move(info));
  return layer;
}

Activation NetworkImpl::add_activation(const std::string& name) {
  Activation act;
  register_at(*this, name, act.ptr());
  activations_.push_back(act);
  return act;
}

void NetworkImpl::finalize(json spec) {
  const auto n = static_cast<int64_t>(infos_.size());
  TORCH_INTERNAL_ASSERT(n >= 1, "a network needs at least one quantizable layer");
  for (auto& info : infos_) {
    info.rel_depth = n == 1 ? 0.0 : static_cast<double>(info.index) / static_cast<double>(n - 1);
  }
  spec_ = std::move(spec);
}

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

// ---------------------------------------------------------------------------------------------
// The zoo

namespace {

std::string shape_str(int64_t c, int64_t h, int64_t w) {
  std::ostringstream s;
  s << c << "x" << h << "x" << w;
  return s.str();
}

std::string list_str(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << "]";
  return s.str();
}

/// Optional key holding an array of integers, each >= min_value; `def` when absent.
std::vector<int64_t> read_int_list(JsonReader& r, const std::string& key,
                                   const std::vector<int64_t>& def, int64_t min_value,
                                   const std::string& what) {
  const json v = r.raw(key);
  if (!r.has(key)) return def;
  const std::string rule = what + " are integers in [" + std::to_string(min_value) + ", " +
                           std::to_string(kMaxLayerWidth) + "]";
  // Values are printed only when a check fails (a large list is never dumped).
  if (!v.is_array()) r.check(false, key, json_type_name(v), "an array; " + rule);
  if (v.size() > kMaxListLength) {
    r.check(false, key, "an array of " + std::to_string(v.size()) + " entries",
            "at most " + std::to_string(kMaxListLength) + " entries");
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& e = v[i];
    const bool ok = e.is_number_integer() && e.get<int64_t>() >= min_value &&
                    e.get<int64_t>() <= kMaxLayerWidth;
    if (!ok) r.check(false, key + "[" + std::to_string(i) + "]", e.dump(), rule);
    out.push_back(e.get<int64_t>());
  }
  return out;
}

/// Base of the concrete networks: remembers the input geometry and checks it in forward.
class ZooNetwork : public NetworkImpl {
 public:
  /// One forward pass of a single zero image (eval mode, no grad, so BN statistics stay
  /// untouched): fills QuantLayerInfo::out_h/out_w and checks that layers and activations were
  /// registered in the order forward() applies them, each exactly once.
  void dry_run(int64_t num_classes) {
    ForwardRecord rec;
    torch::Tensor out;
    {
      struct Restore {  // also on exceptions
        ZooNetwork* net;
        bool training;
        ~Restore() {
          t_record = nullptr;
          net->train(training);
        }
      } restore{this, is_training()};
      torch::NoGradGuard no_grad;
      eval();
      t_record = &rec;
      out = forward(torch::zeros({1, input_.channels, input_.height, input_.width}));
    }
    TORCH_CHECK(out.dim() == 2 && out.size(0) == 1 && out.size(1) == num_classes,
                "network zoo bug: ", type_, ": dry pass gave logits of shape ", out.sizes());
    TORCH_CHECK(rec.layers.size() == layers_.size(), "network zoo bug: ", type_, ": forward ran ",
                rec.layers.size(), " quantizable layers, ", layers_.size(), " are registered");
    for (size_t i = 0; i < layers_.size(); ++i) {
      TORCH_CHECK(rec.layers[i] == layers_[i].get(), "network zoo bug: ", type_, ": layer '",
                  infos_[i].name, "' is not registered in forward order");
      infos_[i].out_h = rec.out_hw[i].first;
      infos_[i].out_w = rec.out_hw[i].second;
    }
    TORCH_CHECK(rec.activations.size() == activations_.size(), "network zoo bug: ", type_,
                ": forward ran ", rec.activations.size(), " activations, ", activations_.size(),
                " are registered");
    for (size_t i = 0; i < activations_.size(); ++i) {
      TORCH_CHECK(rec.activations[i] == activations_[i].get(), "network zoo bug: ", type_,
                  ": activation ", i, " is not registered in forward order");
    }
  }

 protected:
  ZooNetwork(std::string type, const InputShape& input) : type_(std::move(type)), input_(input) {}

  void check_input(const torch::Tensor& x) const {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == input_.channels && x.size(2) == input_.height &&
                    x.size(3) == input_.width,
                "network '", type_, "' was built for input [N, ", input_.channels, ", ",
                input_.height, ", ", input_.width, "], got ", x.sizes());
  }

  void pretty_print(std::ostream& os) const override { os << "Network(" << spec_.dump() << ")"; }

  /// Registers a plain (non-quantizable) submodule at a dotted path.
  template <class Holder>
  Holder add(const std::string& path, Holder m) {
    register_at(*this, path, m.ptr());
    return m;
  }

  std::string type_;
  InputShape input_;
};

// --- mlp --------------------------------------------------------------------------------------
// flatten -> [fc_i -> (bn_i) -> act_i]* -> out

class MlpNetwork final : public ZooNetwork {
 public:
  MlpNetwork(const std::vector<int64_t>& hidden, bool batchnorm, const InputShape& in,
             int64_t classes, json spec)
      : ZooNetwork("mlp", in) {
    int64_t prev = in.channels * in.height * in.width;
    for (size_t i = 0; i < hidden.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      Hidden h;
      // A layer followed by BatchNorm has no bias: BN's shift replaces it.
      h.fc = add_quant_layer("fc" + k,
                             QuantLayer(QuantLayerImpl::linear(prev, hidden[i], !batchnorm)));
      if (batchnorm) h.bn = add("bn" + k, torch::nn::BatchNorm1d(hidden[i]));
      h.act = add_activation("act" + k);
      hidden_.push_back(h);
      prev = hidden[i];
    }
    out_ = add_quant_layer("out", QuantLayer(QuantLayerImpl::linear(prev, classes)));
    finalize(std::move(spec));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    check_input(x);
    torch::Tensor h = x.flatten(1);
    for (auto& l : hidden_) {
      h = l.fc->forward(h);
      if (l.bn) h = l.bn->forward(h);
      h = l.act->forward(h);
    }
    return out_->forward(h);
  }

 private:
  struct Hidden {
    QuantLayer fc{nullptr};
    torch::nn::BatchNorm1d bn{nullptr};
    Activation act{nullptr};
  };
  std::vector<Hidden> hidden_;
  QuantLayer out_{nullptr};
};

std::shared_ptr<ZooNetwork> build_mlp(JsonReader& r, const InputShape& in, int64_t classes) {
  const auto hidden = read_int_list(r, "hidden", {256}, 1, "hidden widths");
  const bool batchnorm = r.get<bool>("batchnorm", false);
  r.finish();
  json spec = {{"type", "mlp"}, {"hidden", hidden}, {"batchnorm", batchnorm}};
  return std::make_shared<MlpNetwork>(hidden, batchnorm, in, classes, std::move(spec));
}

// --- lenet ------------------------------------------------------------------------------------
// [conv5x5 -> act -> maxpool2]* -> flatten -> [fc -> act]* -> out

class LenetNetwork final : public ZooNetwork {
 public:
  LenetNetwork(const std::vector<int64_t>& channels, const std::vector<int64_t>& fc,
               int64_t first_padding, int64_t flat, const InputShape& in, int64_t classes,
               json spec)
      : ZooNetwork("lenet", in) {
    int64_t prev = in.channels;
    for (size_t i = 0; i < channels.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      const int64_t pad = i == 0 ? first_padding : 0;
      convs_.push_back(
          add_quant_layer("features.conv" + k,
                          QuantLayer(QuantLayerImpl::conv2d(prev, channels[i], 5, 1, pad, true))));
      conv_acts_.push_back(add_activation("features.act" + k));
      prev = channels[i];
    }
    prev = flat;
    for (size_t i = 0; i < fc.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      fcs_.push_back(
          add_quant_layer("classifier.fc" + k, QuantLayer(QuantLayerImpl::linear(prev, fc[i]))));
      fc_acts_.push_back(add_activation("classifier.act" + k));
      prev = fc[i];
    }
    out_ = add_quant_layer("classifier.out", QuantLayer(QuantLayerImpl::linear(prev, classes)));
    finalize(std::move(spec));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    check_input(x);
    torch::Tensor h = x;
    for (size_t i = 0; i < convs_.size(); ++i) {
      h = torch::max_pool2d(conv_acts_[i]->forward(convs_[i]->forward(h)), 2);
    }
    h = h.flatten(1);
    for (size_t i = 0; i < fcs_.size(); ++i) h = fc_acts_[i]->forward(fcs_[i]->forward(h));
    return out_->forward(h);
  }

 private:
  std::vector<QuantLayer> convs_, fcs_;
  std::vector<Activation> conv_acts_, fc_acts_;
  QuantLayer out_{nullptr};
};

std::shared_ptr<ZooNetwork> build_lenet(JsonReader& r, const InputShape& in, int64_t classes) {
  const auto channels = read_int_list(r, "channels", {6, 16}, 1, "conv channels");
  const auto fc = read_int_list(r, "fc", {120, 84}, 1, "fc widths");
  r.finish();
  r.check(!channels.empty(), "channels", "[]", "at least one conv stage");
  // LeNet-5 saw 32x32 inputs; smaller images (28x28 MNIST) get padding 2 on the first conv,
  // so that both sizes give the same 5x5 feature map after two stages.
  const int64_t first_padding = (in.height < 32 || in.width < 32) ? 2 : 0;
  int64_t h = in.height, w = in.width;
  for (size_t i = 0; i < channels.size(); ++i) {
    const int64_t pad = i == 0 ? first_padding : 0;
    h = (h + 2 * pad - 4) / 2;  // conv5x5, then maxpool 2x2 (floor)
    w = (w + 2 * pad - 4) / 2;
    r.check(h >= 1 && w >= 1, "channels", list_str(channels),
            "input " + shape_str(in.channels, in.height, in.width) + " is too small: stage " +
                std::to_string(i + 1) +
                " (conv5x5 shrinks by 4, maxpool halves) leaves less than 1x1; use fewer "
                "stages or a larger input");
  }
  json spec = {{"type", "lenet"}, {"channels", channels}, {"fc", fc}};
  return std::make_shared<LenetNetwork>(channels, fc, first_padding, channels.back() * h * w, in,
                                        classes, std::move(spec));
}

// --- vgg --------------------------------------------------------------------------------------
// [conv3x3(pad 1) -> bn -> act | maxpool2 ("M")]* -> flatten -> [fc -> act]* -> out

class VggNetwork final : public ZooNetwork {
 public:
  /// `blocks`: conv width, or 0 for a max-pool.
  VggNetwork(const std::vector<int64_t>& blocks, const std::vector<int64_t>& fc, int64_t flat,
             const InputShape& in, int64_t classes, json spec)
      : ZooNetwork("vgg", in) {
    int64_t prev = in.channels, n = 0;
    for (int64_t b : blocks) {
      Item item;
      if (b > 0) {
        const std::string k = std::to_string(++n);
        // Followed by BatchNorm: no bias.
        item.conv = add_quant_layer("features.conv" + k,
                                    QuantLayer(QuantLayerImpl::conv2d(prev, b, 3, 1, 1, false)));
        item.bn = add("features.bn" + k, torch::nn::BatchNorm2d(b));
        item.act = add_activation("features.act" + k);
        prev = b;
      }
      features_.push_back(item);
    }
    prev = flat;
    for (size_t i = 0; i < fc.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      fcs_.push_back(
          add_quant_layer("classifier.fc" + k, QuantLayer(QuantLayerImpl::linear(prev, fc[i]))));
      fc_acts_.push_back(add_activation("classifier.act" + k));
      prev = fc[i];
    }
    out_ = add_quant_layer("classifier.out", QuantLayer(QuantLayerImpl::linear(prev, classes)));
    finalize(std::move(spec));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    check_input(x);
    torch::Tensor h = x;
    for (auto& item : features_) {
      h = item.conv ? item.act->forward(item.bn->forward(item.conv->forward(h)))
                    : torch::max_pool2d(h, 2);
    }
    h = h.flatten(1);
    for (size_t i = 0; i < fcs_.size(); ++i) h = fc_acts_[i]->forward(fcs_[i]->forward(h));
    return out_->forward(h);
  }

 private:
  struct Item {  ///< a conv block, or a max-pool when `conv` is empty
    QuantLayer conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};
    Activation act{nullptr};
  };
  std::vector<Item> features_;
  std::vector<QuantLayer> fcs_;
  std::vector<Activation> fc_acts_;
  QuantLayer out_{nullptr};
};

std::shared_ptr<ZooNetwork> build_vgg(JsonReader& r, const InputShape& in, int64_t classes) {
  const json def = json::array({32, "M", 64, "M", 128, "M"});
  const json raw = r.raw("blocks");
  const json blocks_json = r.has("blocks") ? raw : def;
  const auto fc = read_int_list(r, "fc", {256}, 1, "fc widths");
  r.finish();

  const std::string rule = "a conv width (integer >= 1) or \"M\" (max-pool 2x2)";
  if (!blocks_json.is_array() || blocks_json.size() > kMaxListLength) {
    r.check(false, "blocks", json_type_name(blocks_json),
            "an array of at most " + std::to_string(kMaxListLength) + " entries; each entry is " +
                rule);
  }
  std::vector<int64_t> blocks;  // 0 = max-pool
  int64_t h = in.height, w = in.width, channels = in.channels;
  for (size_t i = 0; i < blocks_json.size(); ++i) {
    const json& e = blocks_json[i];
    const std::string key = "blocks[" + std::to_string(i) + "]";
    if (e.is_string()) {
      r.check(e.get<std::string>() == "M", key, e.dump(), rule);
      blocks.push_back(0);
      h /= 2;
      w /= 2;
      r.check(h >= 1 && w >= 1, "blocks", blocks_json.dump(),
              "input " + shape_str(in.channels, in.height, in.width) +
                  " is too small: the feature map shrinks to 0 at " + key +
                  " (each \"M\" halves it); use fewer \"M\" or a larger input");
    } else {
      if (!e.is_number_integer() || e.get<int64_t>() < 1 || e.get<int64_t>() > kMaxLayerWidth)
        r.check(false, key, e.dump(),
                rule + " (channels <= " + std::to_string(kMaxLayerWidth) + ")");
      blocks.push_back(e.get<int64_t>());
      channels = blocks.back();
    }
  }
  const bool has_conv = std::any_of(blocks.begin(), blocks.end(), [](int64_t b) { return b > 0; });
  r.check(has_conv, "blocks", blocks_json.dump(), "at least one conv width");

  json spec = {{"type", "vgg"}, {"blocks", blocks_json}, {"fc", fc}};
  return std::make_shared<VggNetwork>(blocks, fc, channels * h * w, in, classes, std::move(spec));
}

// --- resnet -----------------------------------------------------------------------------------
// CIFAR ResNet (He et al. 2016, section 4.2): depth 6n+2 = stem conv + 3 stages x n basic blocks
// x 2 convs + fc. Stage widths w, 2w, 4w; the first block of stages 2 and 3 has stride 2.
// Projection shortcuts (1x1 conv + BN, option B) where the shape changes.

class ResnetNetwork final : public ZooNetwork {
 public:
  ResnetNetwork(int64_t n, int64_t width, const InputShape& in, int64_t classes, json spec)
      : ZooNetwork("resnet", in) {
    stem_conv_ = add_quant_layer(
        "stem.conv", QuantLayer(QuantLayerImpl::conv2d(in.channels, width, 3, 1, 1, false)));
    stem_bn_ = add("stem.bn", torch::nn::BatchNorm2d(width));
    stem_act_ = add_activation("stem.act");
    int64_t prev = width;
    for (int64_t s = 0; s < 3; ++s) {
      const int64_t out = width << s;
      for (int64_t b = 0; b < n; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        const std::string p =
            "stage" + std::to_string(s + 1) + ".block" + std::to_string(b + 1) + ".";
        Block blk;
        // Registration (= quant layer index) order: conv1, conv2, shortcut conv.
        blk.conv1 = add_quant_layer(
            p + "conv1", QuantLayer(QuantLayerImpl::conv2d(prev, out, 3, stride, 1, false)));
        blk.bn1 = add(p + "bn1", torch::nn::BatchNorm2d(out));
        blk.act1 = add_activation(p + "act1");
        blk.conv2 = add_quant_layer(p + "conv2",
                                    QuantLayer(QuantLayerImpl::conv2d(out, out, 3, 1, 1, false)));
        blk.bn2 = add(p + "bn2", torch::nn::BatchNorm2d(out));
        if (stride != 1 || prev != out) {
          blk.sc_conv =
              add_quant_layer(p + "shortcut.conv",
                              QuantLayer(QuantLayerImpl::conv2d(prev, out, 1, stride, 0, false)));
          blk.sc_bn = add(p + "shortcut.bn", torch::nn::BatchNorm2d(out));
        }
        blk.act2 = add_activation(p + "act2");
        blocks_.push_back(blk);
        prev = out;
      }
    }
    out_ = add_quant_layer("classifier.out", QuantLayer(QuantLayerImpl::linear(prev, classes)));
    finalize(std::move(spec));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    check_input(x);
    torch::Tensor h = stem_act_->forward(stem_bn_->forward(stem_conv_->forward(x)));
    for (auto& b : blocks_) {
      torch::Tensor y = b.act1->forward(b.bn1->forward(b.conv1->forward(h)));
      y = b.bn2->forward(b.conv2->forward(y));
      const torch::Tensor sc = b.sc_conv ? b.sc_bn->forward(b.sc_conv->forward(h)) : h;
      h = b.act2->forward(y + sc);
    }
    return out_->forward(h.mean({2, 3}));  // global average pool
  }

 private:
  struct Block {
    QuantLayer conv1{nullptr}, conv2{nullptr}, sc_conv{nullptr};
    torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, sc_bn{nullptr};
    Activation act1{nullptr}, act2{nullptr};
  };
  QuantLayer stem_conv_{nullptr};
  torch::nn::BatchNorm2d stem_bn_{nullptr};
  Activation stem_act_{nullptr};
  std::vector<Block> blocks_;
  QuantLayer out_{nullptr};
};

std::shared_ptr<ZooNetwork> build_resnet(JsonReader& r, const InputShape& in, int64_t classes) {
  const auto depth = r.get<int64_t>("depth", 8);
  const auto width = r.get<int64_t>("width", 16);
  r.finish();
  r.check(depth >= 8 && (depth - 2) % 6 == 0, "depth", depth,
          "depth = 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110)");
  r.check(depth <= kMaxResnetDepth, "depth", depth, "depth <= " + std::to_string(kMaxResnetDepth));
  r.check(width >= 1 && width <= kMaxLayerWidth, "width", width,
          "1 <= width <= " + std::to_string(kMaxLayerWidth));
  json spec = {{"type", "resnet"}, {"depth", depth}, {"width", width}};
  return std::make_shared<ResnetNetwork>((depth - 2) / 6, width, in, classes, std::move(spec));
}

using Builder = std::shared_ptr<ZooNetwork> (*)(JsonReader&, const InputShape&, int64_t);

const std::map<std::string, Builder>& registry() {
  static const std::map<std::string, Builder> kRegistry = {
      {"lenet", build_lenet}, {"mlp", build_mlp}, {"resnet", build_resnet}, {"vgg", build_vgg}};
  return kRegistry;
}

}  // namespace

std::vector<std::string> network_types() {
  std::vector<std::string> names;
  for (const auto& [name, builder] : registry()) names.push_back(name);
  return names;
}

Network build_network(const json& spec, const InputShape& input, int64_t num_classes) {
  TORCH_CHECK_VALUE(
      input.channels >= 1 && input.height >= 1 && input.width >= 1,
      "network spec: input shape = ", shape_str(input.channels, input.height, input.width),
      ". Violated constraint: channels, height, width >= 1");
  TORCH_CHECK_VALUE(num_classes >= 1, "network spec: num_classes = ", num_classes,
                    ". Violated constraint: num_classes >= 1");
  JsonReader r(spec, "network", "network spec");
  const auto type = r.required<std::string>("type");
  r.check_one_of("type", type, network_types());
  TORCH_CHECK_VALUE(
      input.channels <= kMaxInputSide && input.height <= kMaxInputSide &&
          input.width <= kMaxInputSide,
      "network spec: input shape = ", shape_str(input.channels, input.height, input.width),
      ". Violated constraint: each side <= ", kMaxInputSide);
  int64_t budget = kMaxNetworkWeights;
  t_weight_budget = &budget;
  struct Reset {
    ~Reset() { t_weight_budget = nullptr; }
  } reset;
  auto net = registry().at(type)(r, input, num_classes);
  net->dry_run(num_classes);
  return net;
}

}  // namespace qsched::inner
