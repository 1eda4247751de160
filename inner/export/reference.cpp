// Eigen reference inference of an exported network. No torch here (see reference.h).
#include "inner/export/reference.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <sstream>

namespace qsched::inner::xport {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Test images (IDX / CIFAR-10), torch-free

namespace {

[[noreturn]] void data_fail(const std::string& path, const std::string& what) {
  throw ExportError("test data '" + path + "': " + what);
}

/// Whole file, gunzipped when it is gzip (zlib's gz* functions pass raw files through).
std::string read_maybe_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) data_fail(path, "cannot be opened (missing or unreadable)");
  std::string out;
  char buf[1 << 16];
  while (true) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      gzclose(f);
      data_fail(path, "read error (corrupt gzip?)");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  gzclose(f);
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

/// `dir/name` when it exists, else `dir/name.gz`, else "".
std::string pick(const std::string& dir, const std::string& name) {
  for (const std::string& p : {dir + "/" + name, dir + "/" + name + ".gz"}) {
    if (fs::is_regular_file(p)) return p;
  }
  return "";
}

}  // namespace

RawImages read_test_images(const std::string& dir) {
  RawImages r;
  const std::string img_path = pick(dir, "t10k-images-idx3-ubyte");
  const std::string lab_path = pick(dir, "t10k-labels-idx1-ubyte");
  if (!img_path.empty() && !lab_path.empty()) {
    const std::string img = read_maybe_gz(img_path), lab = read_maybe_gz(lab_path);
    if (img.size() < 16 || be32(img, 0) != 0x803) data_fail(img_path, "not an IDX image file");
    if (lab.size() < 8 || be32(lab, 0) != 0x801) data_fail(lab_path, "not an IDX label file");
    r.n = be32(img, 4);
    r.channels = 1;
    r.height = be32(img, 8);
    r.width = be32(img, 12);
    uint64_t count = 0;
    const bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(r.n),
                                                 static_cast<uint64_t>(r.height), &count) ||
                          __builtin_mul_overflow(count, static_cast<uint64_t>(r.width), &count);
    if (overflow || r.n == 0 || r.height == 0 || r.width == 0 || img.size() - 16 != count) {
      data_fail(img_path, "size " + std::to_string(img.size()) + " does not match its header");
    }
    if (be32(lab, 4) != r.n || lab.size() != 8 + static_cast<uint64_t>(r.n)) {
      data_fail(lab_path, "label count does not match " + img_path);
    }
    r.pixels.resize(count);
    for (uint64_t i = 0; i < count; ++i) {
      // As datasets/idx.cpp: uint8 -> float, divided by 255 in float32.
      r.pixels[i] = static_cast<float>(static_cast<uint8_t>(img[16 + i])) / 255.0f;
    }
    for (int64_t i = 0; i < r.n; ++i) r.labels.push_back(static_cast<uint8_t>(lab[8 + i]));
    r.source = img_path;
    return r;
  }
  const std::string cifar = dir + "/test_batch.bin";
  if (fs::is_regular_file(cifar)) {
    const std::string b = read_maybe_gz(cifar);
    constexpr int64_t kRecord = 1 + 3 * 32 * 32;
    if (b.empty() || b.size() % kRecord != 0) {
      data_fail(cifar, "size " + std::to_string(b.size()) + " is not a multiple of 3073");
    }
    r.n = static_cast<int64_t>(b.size()) / kRecord;
    r.channels = 3;
    r.height = r.width = 32;
    r.pixels.resize(static_cast<size_t>(r.n) * 3072);
    for (int64_t i = 0; i < r.n; ++i) {
      r.labels.push_back(static_cast<uint8_t>(b[i * kRecord]));
      for (int64_t j = 0; j < 3072; ++j) {
        r.pixels[i * 3072 + j] =
            static_cast<float>(static_cast<uint8_t>(b[i * kRecord + 1 + j])) / 255.0f;
      }
    }
    r.source = cifar;
    return r;
  }
  data_fail(dir,
            "no test split found (expected t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz], or CIFAR-10 test_batch.bin)");
}

// ---------------------------------------------------------------------------------------------
// Building

namespace {

std::string dims_str(const std::vector<int64_t>& d) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < d.size(); ++i) s << (i ? ", " : "") << d[i];
  s << "]";
  return s.str();
}

}  // namespace

void ReferenceNet::fail(const std::string& what) const {
  throw ExportError("export file '" + src_ + "': " + what);
}

const Record& ReferenceNet::take(const std::string& name, const std::vector<int64_t>& dims,
                                 bool allow_codes) {
  for (size_t i = 0; i < model_->records.size(); ++i) {
    const Record& r = model_->records[i];
    if (r.name != name) continue;
    if (r.dims != dims) {
      fail("inconsistent sizes: record '" + name + "' has shape " + dims_str(r.dims) +
           ", the network in the header needs " + dims_str(dims));
    }
    if (r.type != RecordType::kFloat32 && !allow_codes) {
      fail("record '" + name + "' holds codes, expected float32");
    }
    if (r.type == RecordType::kFloat32) {
      for (float v : r.values) {
        if (!std::isfinite(v)) fail("record '" + name + "' holds a non-finite value");
      }
    }
    used_[i] = true;
    return r;
  }
  fail("record '" + name + "' is missing (the network in the header needs it)");
}

std::vector<float> ReferenceNet::floats(const std::string& name, int64_t n) {
  const Record& r = take(name, {n}, false);
  floats_ += n;
  return r.values;
}

ReferenceNet::Step ReferenceNet::add_conv(const std::string& name, Shape& s, int64_t cout,
                                          int64_t k, int64_t stride, int64_t pad, bool bias,
                                          bool linear) {
  Dense d;
  d.name = name;
  d.conv = !linear;
  d.cin = s.c;
  d.cout = cout;
  d.k = k;
  d.stride = stride;
  d.pad = pad;
  const Record& r =
      take(name + ".weight",
           linear ? std::vector<int64_t>{cout, s.c} : std::vector<int64_t>{cout, s.c, k, k}, true);
  const int64_t fan_in = s.c * k * k;
  d.w.resize(cout, fan_in);
  if (r.type == RecordType::kCodes) {
    d.bits = r.bits;
    d.scale = std::ldexp(1.0f, r.n2);  // exact: a power of two
    for (int64_t i = 0; i < cout * fan_in; ++i) {
      // Q = code_value / 2^n2 = sign · 2^(k - n2): an exact integer.
      d.w.data()[i] = std::ldexp(code_value(r.codes[i], r.n2, r.bits), -r.n2);
    }
    coded_ += cout * fan_in;
  } else if (r.type == RecordType::kLevels) {
    auto it = weight_q_.find(r.name);
    if (it == weight_q_.end()) {
      fail("record '" + r.name +
           "' holds level codes but header quantizers.weights has no entry "
           "for it");
    }
    WeightQuant& q = it->second;
    if (static_cast<int64_t>(q.levels.size()) != r.n1) {
      fail("record '" + r.name + "' has " + std::to_string(r.n1) +
           " levels, header quantizers.weights lists " + std::to_string(q.levels.size()));
    }
    q.used = true;
    d.bits = r.bits;
    d.levels = true;
    d.scale = static_cast<float>(q.eps);
    for (int64_t i = 0; i < cout * fan_in; ++i) {
      d.w.data()[i] = static_cast<float>(q.levels[r.codes[i]]);
    }
    coded_ += cout * fan_in;
  } else {
    std::copy(r.values.begin(), r.values.end(), d.w.data());
    floats_ += cout * fan_in;
  }
  if (bias) {
    auto b = floats(name + ".bias", cout);
    d.bias = Eigen::Map<Eigen::VectorXf>(b.data(), cout);
  }
  s.h = (s.h + 2 * pad - k) / stride + 1;
  s.w = (s.w + 2 * pad - k) / stride + 1;
  if (s.h < 1 || s.w < 1) fail("layer '" + name + "' leaves an empty feature map");
  s.c = cout;
  dense_.push_back(std::move(d));
  return {Op::kDense, dense_.size() - 1};
}

ReferenceNet::Step ReferenceNet::add_linear(const std::string& name, Shape& s, int64_t out,
                                            bool bias) {
  // A Linear layer is a 1x1 convolution of the flattened input, with weight shape [out, in].
  s = {s.c * s.h * s.w, 1, 1};
  return add_conv(name, s, out, 1, 1, 0, bias, /*linear=*/true);
}

ReferenceNet::Step ReferenceNet::add_bn(const std::string& name, const Shape& s) {
  const int64_t c = s.c;
  auto mean = floats(name + ".running_mean", c);
  auto var = floats(name + ".running_var", c);
  auto weight = floats(name + ".weight", c);
  auto bias = floats(name + ".bias", c);
  Affine a;
  a.alpha.resize(c);
  a.beta.resize(c);
  const auto eps = static_cast<float>(eps_);
  for (int64_t i = 0; i < c; ++i) {
    if (var[i] < 0) fail("record '" + name + ".running_var' holds a negative variance");
    // As LibTorch's CPU batch_norm in eval mode (float opmath).
    const float invstd = 1.0f / std::sqrt(var[i] + eps);
    a.alpha[i] = invstd * weight[i];
    a.beta[i] = bias[i] - mean[i] * a.alpha[i];
  }
  affine_.push_back(std::move(a));
  return {Op::kAffine, affine_.size() - 1};
}

ReferenceNet::Step ReferenceNet::add_act() { return {Op::kAct, acts_++}; }

void ReferenceNet::read_quantizers(const json& q) {
  auto bad = [&](const std::string& what) { fail("bad header: quantizers." + what); };
  auto levels_of = [&](const json& e, const std::string& at) {
    if (!e.contains("levels") || !e["levels"].is_array()) bad(at + ".levels missing");
    std::vector<double> v;
    for (const auto& x : e["levels"]) {
      if (!x.is_number() || !std::isfinite(x.get<double>())) bad(at + ".levels holds " + x.dump());
      v.push_back(x.get<double>());
    }
    if (v.size() < 2 || v.size() > 256) bad(at + ".levels needs 2..256 values");
    for (size_t i = 1; i < v.size(); ++i) {
      if (!(v[i] > v[i - 1])) bad(at + ".levels must be strictly increasing");
    }
    return v;
  };
  auto eps_of = [&](const json& e, const std::string& at) {
    if (!e.contains("eps") || !e["eps"].is_number()) bad(at + ".eps missing");
    const double eps = e["eps"].get<double>();
    if (!std::isfinite(eps) || !(eps > 0)) bad(at + ".eps = " + e["eps"].dump() + ", must be > 0");
    return eps;
  };
  if (!q.is_object()) bad("is not an object");
  for (auto it = q.begin(); it != q.end(); ++it) {
    if (it.key() != "weights" && it.key() != "activations") {
      bad(it.key() + " is not one of: activations, weights");
    }
    if (!it.value().is_array()) bad(it.key() + " is not a list");
  }
  if (q.contains("weights")) {
    for (size_t i = 0; i < q["weights"].size(); ++i) {
      const json& e = q["weights"][i];
      const std::string at = "weights[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("record") || !e["record"].is_string()) {
        bad(at + ".record missing");
      }
      WeightQuant w;
      w.levels = levels_of(e, at);
      w.eps = eps_of(e, at);
      if (!weight_q_.emplace(e["record"].get<std::string>(), w).second) {
        bad(at + ": record '" + e["record"].get<std::string>() + "' listed twice");
      }
    }
  }
  if (q.contains("activations")) {
    for (size_t i = 0; i < q["activations"].size(); ++i) {
      const json& e = q["activations"][i];
      const std::string at = "activations[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("index") || !e["index"].is_number_integer() ||
          e["index"].get<int64_t>() < 0) {
        bad(at + ".index missing or not an integer >= 0");
      }
      const std::vector<double> lv = levels_of(e, at);
      const double eps = eps_of(e, at);
      if (!e.contains("thresholds") || !e["thresholds"].is_array() ||
          e["thresholds"].size() != lv.size() - 1) {
        bad(at + ".thresholds needs one value fewer than levels");
      }
      ActQuant a;
      a.eps = static_cast<float>(eps);
      for (double v : lv) a.levels.push_back(static_cast<float>(v));
      double prev = -INFINITY;
      for (const auto& x : e["thresholds"]) {
        if (!x.is_number() || !std::isfinite(x.get<double>()) || !(x.get<double>() > prev)) {
          bad(at + ".thresholds must be finite and strictly increasing");
        }
        prev = x.get<double>();
        a.thresholds.push_back(static_cast<float>(prev * eps));
      }
      if (!act_q_.emplace(static_cast<size_t>(e["index"].get<int64_t>()), a).second) {
        bad(at + ": activation " + e["index"].dump() + " listed twice");
      }
    }
  }
}

namespace {

/// Spec helpers: the header holds the resolved spec, so every key must be present.
std::vector<int64_t> int_list(const json& spec, const std::string& key,
                              const std::function<void(const std::string&)>& fail) {
  if (!spec.contains(key) || !spec[key].is_array())
    fail("network." + key + " missing or not a list");
  std::vector<int64_t> v;
  for (const auto& e : spec[key]) {
    if (!e.is_number_integer() || e.get<int64_t>() < 1) {
      fail("network." + key + " holds " + e.dump() + ", expected integers >= 1");
    }
    v.push_back(e.get<int64_t>());
  }
  return v;
}

}  // namespace

ReferenceNet::ReferenceNet(const ExportModel& m, const std::string& source) : src_(source) {
  model_ = &m;
  used_.assign(m.records.size(), false);
  const json& hd = m.header;
  auto bad = [&](const std::string& what) { fail("bad header: " + what); };
  try {
    const json& in = hd.at("input");
    c_ = in.at("channels").get<int64_t>();
    h_ = in.at("height").get<int64_t>();
    w_ = in.at("width").get<int64_t>();
    classes_ = hd.at("num_classes").get<int64_t>();
    mean_ = hd.at("normalize").at("mean").get<std::vector<float>>();
    std_ = hd.at("normalize").at("std").get<std::vector<float>>();
    eps_ = hd.at("batchnorm_eps").get<double>();
    type_ = hd.at("network").at("type").get<std::string>();
  } catch (const json::exception& e) {
    bad(std::string("missing or mistyped key (") + e.what() + ")");
  }
  if (c_ < 1 || h_ < 1 || w_ < 1 || classes_ < 1) bad("input shape and num_classes must be >= 1");
  // Bounded before anything is sized from them (kMaxInput* in reference.h).
  if (c_ > kMaxInputSide || h_ > kMaxInputSide || w_ > kMaxInputSide ||
      c_ * h_ * w_ > kMaxInputSize || classes_ > kMaxClasses) {
    bad("input " + std::to_string(c_) + "x" + std::to_string(h_) + "x" + std::to_string(w_) +
        " or num_classes " + std::to_string(classes_) + " is out of range (each side <= " +
        std::to_string(kMaxInputSide) + ", c*h*w <= " + std::to_string(kMaxInputSize) +
        ", num_classes <= " + std::to_string(kMaxClasses) + ")");
  }
  if (static_cast<int64_t>(mean_.size()) != c_ || static_cast<int64_t>(std_.size()) != c_) {
    bad("normalize.mean/std need one value per input channel");
  }
  for (int64_t i = 0; i < c_; ++i) {
    if (!std::isfinite(mean_[i]) || !(std_[i] > 0)) bad("normalize: std must be > 0");
  }
  if (!(eps_ > 0)) bad("batchnorm_eps must be > 0");
  if (hd.contains("quantizers")) {
    if (m.version < 2) bad("\"quantizers\" needs format version >= 2");
    read_quantizers(hd["quantizers"]);
  }

  const json& spec = hd["network"];
  std::function<void(const std::string&)> spec_fail = bad;
  Shape s{c_, h_, w_};
  if (type_ == "mlp") {
    // flatten -> [fc_i -> (bn_i) -> act_i]* -> out
    const auto hidden = int_list(spec, "hidden", spec_fail);
    if (!spec.contains("batchnorm") || !spec["batchnorm"].is_boolean()) bad("network.batchnorm");
    const bool bn = spec["batchnorm"].get<bool>();
    steps_.push_back({Op::kFlatten});
    for (size_t i = 0; i < hidden.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      steps_.push_back(add_linear("fc" + k, s, hidden[i], !bn));
      if (bn) steps_.push_back(add_bn("bn" + k, s));
      steps_.push_back(add_act());
    }
    steps_.push_back(add_linear("out", s, classes_, true));
  } else if (type_ == "lenet") {
    // [conv5x5 -> act -> maxpool2]* -> flatten -> [fc -> act]* -> out
    const auto channels = int_list(spec, "channels", spec_fail);
    const auto fc = int_list(spec, "fc", spec_fail);
    if (channels.empty()) bad("network.channels is empty");
    const int64_t first_padding = (h_ < 32 || w_ < 32) ? 2 : 0;
    for (size_t i = 0; i < channels.size(); ++i) {
      const std::string k = std::to_string(i + 1);
      steps_.push_back(
          add_conv("features.conv" + k, s, channels[i], 5, 1, i == 0 ? first_padding : 0, true));
      steps_.push_back(add_act());
      steps_.push_back({Op::kMaxPool});
      s.h /= 2;
      s.w /= 2;
      if (s.h < 1 || s.w < 1) bad("network.channels: the input is too small");
    }
    steps_.push_back({Op::kFlatten});
    for (size_t i = 0; i < fc.size(); ++i) {
      steps_.push_back(add_linear("classifier.fc" + std::to_string(i + 1), s, fc[i], true));
      steps_.push_back(add_act());
    }
    steps_.push_back(add_linear("classifier.out", s, classes_, true));
  } else if (type_ == "vgg") {
    // [conv3x3(pad 1) -> bn -> act | maxpool2 ("M")]* -> flatten -> [fc -> act]* -> out
    if (!spec.contains("blocks") || !spec["blocks"].is_array()) bad("network.blocks");
    const auto fc = int_list(spec, "fc", spec_fail);
    int n = 0;
    for (const auto& b : spec["blocks"]) {
      if (b.is_string() && b.get<std::string>() == "M") {
        steps_.push_back({Op::kMaxPool});
        s.h /= 2;
        s.w /= 2;
        if (s.h < 1 || s.w < 1) bad("network.blocks: the input is too small");
      } else if (b.is_number_integer() && b.get<int64_t>() >= 1) {
        const std::string k = std::to_string(++n);
        steps_.push_back(add_conv("features.conv" + k, s, b.get<int64_t>(), 3, 1, 1, false));
        steps_.push_back(add_bn("features.bn" + k, s));
        steps_.push_back(add_act());
      } else {
        bad("network.blocks holds " + b.dump());
      }
    }
    if (n == 0) bad("network.blocks has no conv");
    steps_.push_back({Op::kFlatten});
    for (size_t i = 0; i < fc.size(); ++i) {
      steps_.push_back(add_linear("classifier.fc" + std::to_string(i + 1), s, fc[i], true));
      steps_.push_back(add_act());
    }
    steps_.push_back(add_linear("classifier.out", s, classes_, true));
  } else if (type_ == "resnet") {
    // stem conv3x3 -> bn -> act, 3 stages x n basic blocks, global average pool, out.
    if (!spec.contains("depth") || !spec["depth"].is_number_integer() || !spec.contains("width") ||
        !spec["width"].is_number_integer()) {
      bad("network.depth/width");
    }
    const auto depth = spec["depth"].get<int64_t>(), width = spec["width"].get<int64_t>();
    if (depth < 8 || (depth - 2) % 6 != 0 || width < 1) bad("network.depth = 6n+2, width >= 1");
    const int64_t n = (depth - 2) / 6;
    steps_.push_back(add_conv("stem.conv", s, width, 3, 1, 1, false));
    steps_.push_back(add_bn("stem.bn", s));
    steps_.push_back(add_act());
    for (int64_t st = 0; st < 3; ++st) {
      const int64_t out = width << st;
      for (int64_t b = 0; b < n; ++b) {
        const int64_t stride = (st > 0 && b == 0) ? 2 : 1;
        const std::string p =
            "stage" + std::to_string(st + 1) + ".block" + std::to_string(b + 1) + ".";
        Block blk;
        Shape in = s;
        blk.main.push_back(add_conv(p + "conv1", s, out, 3, stride, 1, false));
        blk.main.push_back(add_bn(p + "bn1", s));
        blk.main.push_back(add_act());
        blk.main.push_back(add_conv(p + "conv2", s, out, 3, 1, 1, false));
        blk.main.push_back(add_bn(p + "bn2", s));
        if (stride != 1 || in.c != out) {
          blk.shortcut.push_back(add_conv(p + "shortcut.conv", in, out, 1, stride, 0, false));
          blk.shortcut.push_back(add_bn(p + "shortcut.bn", in));
        }
        if (in.c != s.c || in.h != s.h || in.w != s.w) bad("resnet block shapes disagree");
        blk.act = add_act().index;
        blocks_.push_back(std::move(blk));
        steps_.push_back({Op::kBlock, blocks_.size() - 1});
      }
    }
    steps_.push_back({Op::kGlobalAvgPool});
    s.h = s.w = 1;
    steps_.push_back(add_linear("classifier.out", s, classes_, true));
  } else {
    bad("network.type = \"" + type_ + "\" is not one of: lenet, mlp, resnet, vgg");
  }
  for (size_t i = 0; i < used_.size(); ++i) {
    if (!used_[i]) fail("record '" + m.records[i].name + "' is not part of the network");
  }
  for (const auto& [name, q] : weight_q_) {
    if (!q.used) bad("quantizers.weights names '" + name + "', which is not a level-coded layer");
  }
  for (const auto& [index, q] : act_q_) {
    if (index >= acts_) {
      bad("quantizers.activations index " + std::to_string(index) + ", but the network has " +
          std::to_string(acts_) + " hidden activations");
    }
  }
  model_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Forward

void ReferenceNet::Act::materialize() {
  if (scale != 1.0f) x *= scale;
  scale = 1.0f;
}

void ReferenceNet::activation(size_t index, Act& a) const {
  auto it = act_q_.find(index);
  if (it == act_q_.end()) {
    a.x = a.x.cwiseMax(0.0f);  // ReLU commutes with the positive scale
    return;
  }
  const ActQuant& q = it->second;
  a.materialize();
  // q_0 + sum_i (q_i - q_{i-1}) [x >= theta_i]: the level values (integers for the built-in
  // levels), carried with scale eps.
  RowMatrix y = RowMatrix::Constant(a.x.rows(), a.x.cols(), q.levels[0]);
  for (size_t i = 0; i < q.thresholds.size(); ++i) {
    const float dq = q.levels[i + 1] - q.levels[i];
    y.array() += (a.x.array() >= q.thresholds[i]).cast<float>() * dq;
  }
  a.x = std::move(y);
  a.scale = q.eps;
}

void ReferenceNet::dense(const Dense& d, Act& a) const {
  const int64_t n = a.x.rows();
  // One rescale per layer: the weight scale (2^n2 exact, eps_w, or 1) times the input's.
  const float scale = d.scale * a.scale;
  a.scale = 1.0f;
  if (!d.conv) {
    // y = scale · (x · Q^T) + b: [n, in] x [in, out].
    RowMatrix y = a.x * d.w.transpose();
    if (scale != 1.0f) y *= scale;
    if (d.bias.size()) y.rowwise() += d.bias.transpose();
    a.x = std::move(y);
    a.c = d.cout;
    a.h = a.w = 1;
    return;
  }
  const int64_t ho = (a.h + 2 * d.pad - d.k) / d.stride + 1;
  const int64_t wo = (a.w + 2 * d.pad - d.k) / d.stride + 1;
  const int64_t hw = ho * wo, kk = d.k * d.k;
  // im2col over the whole batch: row (ci·k + ky)·k + kx (the weight's row-major order),
  // column i·hw + oy·wo + ox.
  RowMatrix cols = RowMatrix::Zero(d.cin * kk, n * hw);
  for (int64_t ci = 0; ci < d.cin; ++ci) {
    for (int64_t ky = 0; ky < d.k; ++ky) {
      for (int64_t kx = 0; kx < d.k; ++kx) {
        float* row = cols.row((ci * d.k + ky) * d.k + kx).data();
        for (int64_t i = 0; i < n; ++i) {
          const float* in = a.x.row(i).data() + ci * a.h * a.w;
          for (int64_t oy = 0; oy < ho; ++oy) {
            const int64_t iy = oy * d.stride - d.pad + ky;
            if (iy < 0 || iy >= a.h) continue;
            for (int64_t ox = 0; ox < wo; ++ox) {
              const int64_t ix = ox * d.stride - d.pad + kx;
              if (ix >= 0 && ix < a.w) row[i * hw + oy * wo + ox] = in[iy * a.w + ix];
            }
          }
        }
      }
    }
  }
  RowMatrix out = d.w * cols;  // [cout, n·hw]
  if (scale != 1.0f) out *= scale;
  RowMatrix y(n, d.cout * hw);
  for (int64_t co = 0; co < d.cout; ++co) {
    const float b = d.bias.size() ? d.bias[co] : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const float* src = out.row(co).data() + i * hw;
      float* dst = y.row(i).data() + co * hw;
      for (int64_t j = 0; j < hw; ++j) dst[j] = src[j] + b;
    }
  }
  a.x = std::move(y);
  a.c = d.cout;
  a.h = ho;
  a.w = wo;
}

void ReferenceNet::run(const std::vector<Step>& steps, Act& a) const {
  for (const Step& st : steps) {
    switch (st.op) {
      case Op::kDense:
        dense(dense_[st.index], a);
        break;
      case Op::kAffine: {
        a.materialize();
        const Affine& f = affine_[st.index];
        const int64_t hw = a.h * a.w;
        for (int64_t c = 0; c < a.c; ++c) {
          a.x.middleCols(c * hw, hw) =
              (a.x.middleCols(c * hw, hw).array() * f.alpha[c] + f.beta[c]).matrix();
        }
        break;
      }
      case Op::kAct:
        activation(st.index, a);
        break;
      case Op::kMaxPool: {
        const int64_t ho = a.h / 2, wo = a.w / 2;
        RowMatrix y(a.x.rows(), a.c * ho * wo);
        for (int64_t i = 0; i < a.x.rows(); ++i) {
          for (int64_t c = 0; c < a.c; ++c) {
            const float* in = a.x.row(i).data() + c * a.h * a.w;
            float* out = y.row(i).data() + c * ho * wo;
            for (int64_t oy = 0; oy < ho; ++oy) {
              for (int64_t ox = 0; ox < wo; ++ox) {
                const float* p = in + 2 * oy * a.w + 2 * ox;
                out[oy * wo + ox] = std::max(std::max(p[0], p[1]), std::max(p[a.w], p[a.w + 1]));
              }
            }
          }
        }
        a.x = std::move(y);
        a.h = ho;
        a.w = wo;
        break;
      }
      case Op::kFlatten:  // rows are already NCHW-flattened
        a.c = a.c * a.h * a.w;
        a.h = a.w = 1;
        break;
      case Op::kBlock: {
        const Block& b = blocks_[st.index];
        Act sc = a;
        run(b.main, a);
        run(b.shortcut, sc);
        a.materialize();
        sc.materialize();
        a.x += sc.x;
        activation(b.act, a);
        break;
      }
      case Op::kGlobalAvgPool: {
        a.materialize();
        const int64_t hw = a.h * a.w;
        RowMatrix y(a.x.rows(), a.c);
        for (int64_t i = 0; i < a.x.rows(); ++i) {
          for (int64_t c = 0; c < a.c; ++c) {
            y(i, c) = a.x.row(i).segment(c * hw, hw).sum() / static_cast<float>(hw);
          }
        }
        a.x = std::move(y);
        a.h = a.w = 1;
        break;
      }
    }
  }
}

RowMatrix ReferenceNet::logits_normalized(const float* x, int64_t n, int64_t batch) const {
  RowMatrix out(n, classes_);
  const int64_t d = input_size();
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min(batch, n - start);
    Act a;
    a.c = c_;
    a.h = h_;
    a.w = w_;
    a.x = Eigen::Map<const RowMatrix>(x + start * d, m, d);
    run(steps_, a);
    a.materialize();
    out.middleRows(start, m) = a.x;
  }
  return out;
}

RowMatrix ReferenceNet::logits(const float* raw, int64_t n, int64_t batch) const {
  const int64_t d = input_size(), hw = h_ * w_;
  std::vector<float> x(raw, raw + n * d);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < c_; ++c) {
      float* p = x.data() + i * d + c * hw;
      // As data::Normalizer::apply: (x - mean) then / std, in float32.
      for (int64_t j = 0; j < hw; ++j) p[j] = (p[j] - mean_[c]) / std_[c];
    }
  }
  return logits_normalized(x.data(), n, batch);
}

std::vector<int64_t> ReferenceNet::argmax(const RowMatrix& logits) {
  std::vector<int64_t> out(logits.rows());
  for (int64_t i = 0; i < logits.rows(); ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < logits.cols(); ++j)
      if (logits(i, j) > logits(i, best)) best = j;
    out[i] = best;
  }
  return out;
}

std::string ReferenceNet::describe() const {
  std::ostringstream s;
  s << type_ << " " << c_ << "x" << h_ << "x" << w_ << " -> " << classes_ << ", " << dense_.size()
    << " layers (";
  for (size_t i = 0; i < dense_.size(); ++i) {
    s << (i ? " " : "") << (dense_[i].bits == 32 ? "f32" : std::to_string(dense_[i].bits) + "b");
    if (dense_[i].levels) s << "-levels";
  }
  s << "), " << coded_ << " coded weights, " << floats_ << " float32 values";
  if (!act_q_.empty()) s << ", " << act_q_.size() << " of " << acts_ << " activations quantized";
  return s.str();
}

}  // namespace qsched::inner::xport
