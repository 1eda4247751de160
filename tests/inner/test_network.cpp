#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "inner/network.h"
#include "tests/util/test_util.h"

namespace qsched::inner {
namespace {

const InputShape kMnist{1, 28, 28};
const InputShape kCifar{3, 32, 32};

Network build(const json& spec, const InputShape& in = kMnist, int64_t classes = 10) {
  return build_network(spec, in, classes);
}

torch::Tensor input_batch(const InputShape& in, int64_t n = 4) {
  return torch::randn({n, in.channels, in.height, in.width});
}

std::vector<std::string> names(const Network& net) {
  std::vector<std::string> out;
  for (const auto& info : net->quant_layers()) out.push_back(info.name);
  return out;
}

std::vector<std::string> kinds(const Network& net) {
  std::vector<std::string> out;
  for (const auto& info : net->quant_layers()) out.push_back(to_string(info.kind));
  return out;
}

TEST(NetworkRegistry, ListsTheTypes) {
  EXPECT_EQ(network_types(), (std::vector<std::string>{"lenet", "mlp", "resnet", "vgg"}));
  EXPECT_EQ(to_string(LayerKind::kLinear), "linear");
  EXPECT_EQ(to_string(LayerKind::kConv2d), "conv2d");
}

// Conformance over every registered type, on MNIST-like and CIFAR-like inputs.
TEST(NetworkZoo, EveryTypeBuildsAndRunsOnBothInputShapes) {
  torch::manual_seed(0);
  for (const auto& type : network_types()) {
    for (const auto& in : {kMnist, kCifar}) {
      SCOPED_TRACE(type + " on " + std::to_string(in.channels) + "x" + std::to_string(in.height));
      Network net = build({{"type", type}}, in, 10);
      const auto x = input_batch(in, 3);
      EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{3, 10}));
      net->eval();
      EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{3, 10}));
      EXPECT_EQ(build({{"type", type}}, in, 7)->forward(x).size(1), 7);

      const auto& infos = net->quant_layers();
      ASSERT_EQ(net->num_quant_layers(), static_cast<int64_t>(infos.size()));
      ASSERT_GE(infos.size(), 2u);
      EXPECT_EQ(infos.front().rel_depth, 0.0);
      EXPECT_EQ(infos.back().rel_depth, 1.0);
      EXPECT_EQ(infos.back().kind, LayerKind::kLinear);
      EXPECT_EQ(infos.back().fan_out, 10);
      EXPECT_FALSE(net->activations().empty());
      auto params = net->named_parameters();
      for (size_t i = 0; i < infos.size(); ++i) {
        const auto& info = infos[i];
        EXPECT_EQ(info.index, static_cast<int64_t>(i));
        if (i > 0) {
          EXPECT_GT(info.rel_depth, infos[i - 1].rel_depth);
        }
        auto& layer = net->layer(static_cast<int64_t>(i));
        EXPECT_EQ(layer->kind(), info.kind);
        EXPECT_EQ(info.numel, layer->weight.numel());
        EXPECT_EQ(info.fan_in * info.fan_out, info.numel);
        EXPECT_EQ(info.fan_out, layer->weight.size(0));
        // The info name is the module path: <name>.weight is this layer's parameter.
        const auto* w = params.find(info.name + ".weight");
        ASSERT_NE(w, nullptr) << info.name;
        EXPECT_TRUE(w->is_same(layer->weight)) << info.name;
      }
      // The spec is stored with defaults filled in and rebuilds the same architecture.
      EXPECT_EQ(net->spec().at("type"), type);
      Network again = build(net->spec(), in, 10);
      EXPECT_EQ(names(again), names(net));
      EXPECT_EQ(again->spec(), net->spec());
      EXPECT_EQ(count_parameters(*again), count_parameters(*net));
    }
  }
}

// Quantizable layers and activations are registered in the order forward() runs them: a
// recording transform sees indices 0, 1, 2, ... for every type.
TEST(NetworkZoo, RegistrationOrderIsForwardOrder) {
  torch::manual_seed(0);
  for (const auto& type : network_types()) {
    SCOPED_TRACE(type);
    Network net = build({{"type", type}}, kCifar);
    std::vector<int64_t> layer_order, act_order;
    for (int64_t i = 0; i < net->num_quant_layers(); ++i) {
      net->layer(i)->set_weight_transform([&layer_order, i](const torch::Tensor& w) {
        layer_order.push_back(i);
        return w;
      });
    }
    for (size_t i = 0; i < net->activations().size(); ++i) {
      net->activation(static_cast<int64_t>(i))
          ->set_transform([&act_order, i](const torch::Tensor& x) {
            act_order.push_back(static_cast<int64_t>(i));
            return torch::relu(x);
          });
    }
    net->forward(input_batch(kCifar, 2));
    std::vector<int64_t> expected_layers(net->num_quant_layers()), expected_acts(act_order.size());
    for (size_t i = 0; i < expected_layers.size(); ++i) expected_layers[i] = i;
    for (size_t i = 0; i < expected_acts.size(); ++i) expected_acts[i] = i;
    EXPECT_EQ(layer_order, expected_layers);
    EXPECT_EQ(act_order, expected_acts);
    EXPECT_EQ(act_order.size(), net->activations().size());
  }
}

TEST(NetworkMlp, LayerMetadata) {
  Network net = build({{"type", "mlp"}, {"hidden", {256}}});
  ASSERT_EQ(net->num_quant_layers(), 2);
  const auto& l = net->quant_layers();
  EXPECT_EQ(names(net), (std::vector<std::string>{"fc1", "out"}));
  EXPECT_EQ(l[0].kind, LayerKind::kLinear);
  EXPECT_EQ(l[0].fan_in, 784);
  EXPECT_EQ(l[0].fan_out, 256);
  EXPECT_EQ(l[0].numel, 200704);
  EXPECT_EQ(l[1].fan_in, 256);
  EXPECT_EQ(l[1].fan_out, 10);
  EXPECT_EQ(l[1].numel, 2560);
  EXPECT_EQ(l[0].kernel_h, 1);
  EXPECT_EQ(l[0].kernel_w, 1);
  EXPECT_EQ(l[0].rel_depth, 0.0);
  EXPECT_EQ(l[1].rel_depth, 1.0);
  EXPECT_EQ(net->activations().size(), 1u);
  EXPECT_EQ(count_parameters(*net), 784 * 256 + 256 + 256 * 10 + 10);
  EXPECT_TRUE(net->layer(0)->bias.defined());
}

TEST(NetworkMlp, EmptyHiddenIsLogisticRegression) {
  Network net = build({{"type", "mlp"}, {"hidden", json::array()}}, kCifar);
  ASSERT_EQ(net->num_quant_layers(), 1);
  EXPECT_EQ(net->quant_layers()[0].fan_in, 3 * 32 * 32);
  EXPECT_EQ(net->quant_layers()[0].rel_depth, 0.0);
  EXPECT_TRUE(net->activations().empty());
  EXPECT_EQ(net->forward(input_batch(kCifar, 2)).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(NetworkMlp, BatchNormVariant) {
  Network net = build({{"type", "mlp"}, {"hidden", {32, 16}}, {"batchnorm", true}});
  EXPECT_EQ(names(net), (std::vector<std::string>{"fc1", "fc2", "out"}));
  EXPECT_EQ(net->quant_layers()[1].rel_depth, 0.5);
  EXPECT_FALSE(net->layer(0)->bias.defined());  // BN's shift replaces the bias
  EXPECT_TRUE(net->layer(2)->bias.defined());
  auto params = net->named_parameters();
  EXPECT_NE(params.find("bn1.weight"), nullptr);
  EXPECT_NE(params.find("bn2.bias"), nullptr);
  EXPECT_EQ(count_parameters(*net), 784 * 32 + 2 * 32 + 32 * 16 + 2 * 16 + 16 * 10 + 10);
  EXPECT_EQ(net->forward(input_batch(kMnist)).sizes(), (std::vector<int64_t>{4, 10}));
}

TEST(NetworkLenet, LayerMetadataOnBothInputs) {
  for (const auto& in : {kMnist, kCifar}) {
    Network net = build({{"type", "lenet"}}, in);
    EXPECT_EQ(kinds(net),
              (std::vector<std::string>{"conv2d", "conv2d", "linear", "linear", "linear"}));
    EXPECT_EQ(names(net),
              (std::vector<std::string>{"features.conv1", "features.conv2", "classifier.fc1",
                                        "classifier.fc2", "classifier.out"}));
    const auto& l = net->quant_layers();
    EXPECT_EQ(l[0].fan_in, in.channels * 25);
    EXPECT_EQ(l[0].kernel_h, 5);
    EXPECT_EQ(l[0].kernel_w, 5);
    EXPECT_EQ(l[1].fan_in, 6 * 25);
    EXPECT_EQ(l[1].fan_out, 16);
    EXPECT_EQ(l[2].fan_in, 16 * 5 * 5);  // 28x28 is padded to behave like 32x32
    EXPECT_EQ(l[2].fan_out, 120);
    EXPECT_EQ(l[3].fan_out, 84);
    EXPECT_EQ(l[4].fan_in, 84);
    EXPECT_EQ(net->activations().size(), 4u);
    EXPECT_EQ(net->layer(0)->padding(), in.height == 28 ? 2 : 0);
    EXPECT_EQ(net->layer(1)->padding(), 0);
  }
  // LeNet-5 parameter count (with a 10-way output layer).
  EXPECT_EQ(count_parameters(*build({{"type", "lenet"}}, kMnist)), 61706);
}

TEST(NetworkLenet, ConfigurableStages) {
  Network net = build({{"type", "lenet"}, {"channels", {4, 8, 8}}, {"fc", json::array()}},
                      InputShape{1, 64, 64});
  // 64 -> 60 -> 30 -> 26 -> 13 -> 9 -> 4
  EXPECT_EQ(kinds(net), (std::vector<std::string>{"conv2d", "conv2d", "conv2d", "linear"}));
  EXPECT_EQ(net->quant_layers()[3].fan_in, 8 * 4 * 4);
  EXPECT_EQ(net->forward(torch::randn({2, 1, 64, 64})).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(NetworkVgg, LayerMetadata) {
  Network net = build({{"type", "vgg"}}, kCifar);
  EXPECT_EQ(names(net),
            (std::vector<std::string>{"features.conv1", "features.conv2", "features.conv3",
                                      "classifier.fc1", "classifier.out"}));
  const auto& l = net->quant_layers();
  EXPECT_EQ(l[0].fan_in, 3 * 9);
  EXPECT_EQ(l[2].fan_out, 128);
  EXPECT_EQ(l[3].fan_in, 128 * 4 * 4);
  EXPECT_EQ(l[3].fan_out, 256);
  EXPECT_EQ(net->activations().size(), 4u);
  EXPECT_FALSE(net->layer(0)->bias.defined());  // conv followed by BN
  EXPECT_EQ(count_parameters(*net), 620586);
  // 28 -> 14 -> 7 -> 3
  EXPECT_EQ(build({{"type", "vgg"}}, kMnist)->quant_layers()[3].fan_in, 128 * 3 * 3);
  // Blocks may start with a pool and repeat widths.
  Network custom = build({{"type", "vgg"}, {"blocks", {"M", 8, 8, "M"}}, {"fc", json::array()}});
  EXPECT_EQ(kinds(custom), (std::vector<std::string>{"conv2d", "conv2d", "linear"}));
  EXPECT_EQ(custom->quant_layers()[2].fan_in, 8 * 7 * 7);
  EXPECT_EQ(custom->spec().at("blocks"), json({"M", 8, 8, "M"}));
}

TEST(NetworkResnet, Resnet8Metadata) {
  Network net = build({{"type", "resnet"}}, kCifar);
  // 7 convs of the 6n+2 count (stem + 3 x 2), 2 projection shortcuts, 1 fc.
  EXPECT_EQ(names(net),
            (std::vector<std::string>{
                "stem.conv", "stage1.block1.conv1", "stage1.block1.conv2", "stage2.block1.conv1",
                "stage2.block1.conv2", "stage2.block1.shortcut.conv", "stage3.block1.conv1",
                "stage3.block1.conv2", "stage3.block1.shortcut.conv", "classifier.out"}));
  const auto& l = net->quant_layers();
  EXPECT_EQ(l[0].fan_in, 3 * 9);
  EXPECT_EQ(l[0].fan_out, 16);
  EXPECT_EQ(l[3].fan_out, 32);
  EXPECT_EQ(net->layer(3)->stride(), 2);
  EXPECT_EQ(net->layer(4)->stride(), 1);
  EXPECT_EQ(l[5].kernel_h, 1);
  EXPECT_EQ(l[5].fan_in, 16);
  EXPECT_EQ(net->layer(5)->stride(), 2);
  EXPECT_EQ(l[8].fan_out, 64);
  EXPECT_EQ(l[9].fan_in, 64);
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_DOUBLE_EQ(l[i].rel_depth, static_cast<double>(i) / 9.0);
    if (i + 1 < l.size()) {
      EXPECT_EQ(l[i].kind, LayerKind::kConv2d);
    }
  }
  EXPECT_EQ(net->activations().size(), 7u);  // stem + 2 per block
  EXPECT_EQ(count_parameters(*net), 78042);
}

TEST(NetworkResnet, DepthAndWidth) {
  Network net = build({{"type", "resnet"}, {"depth", 20}, {"width", 4}}, kMnist);
  // 1 + 3 stages x 3 blocks x 2 convs + 2 shortcuts + fc
  EXPECT_EQ(net->num_quant_layers(), 1 + 18 + 2 + 1);
  EXPECT_EQ(net->activations().size(), 1u + 2 * 9);
  EXPECT_EQ(net->quant_layers().back().fan_in, 16);
  EXPECT_EQ(net->forward(input_batch(kMnist, 2)).sizes(), (std::vector<int64_t>{2, 10}));
}

std::vector<std::pair<int64_t, int64_t>> out_sizes(const Network& net) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& info : net->quant_layers()) out.emplace_back(info.out_h, info.out_w);
  return out;
}

TEST(NetworkZoo, OutputSpatialSizes) {
  using P = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(out_sizes(build({{"type", "mlp"}})), (P{{1, 1}, {1, 1}}));
  for (const auto& in : {kMnist, kCifar}) {
    EXPECT_EQ(out_sizes(build({{"type", "lenet"}}, in)),
              (P{{28, 28}, {10, 10}, {1, 1}, {1, 1}, {1, 1}}));
  }
  EXPECT_EQ(out_sizes(build({{"type", "vgg"}}, kCifar)),
            (P{{32, 32}, {16, 16}, {8, 8}, {1, 1}, {1, 1}}));
  EXPECT_EQ(out_sizes(build({{"type", "resnet"}}, kCifar)), (P{{32, 32},
                                                               {32, 32},
                                                               {32, 32},
                                                               {16, 16},
                                                               {16, 16},
                                                               {16, 16},
                                                               {8, 8},
                                                               {8, 8},
                                                               {8, 8},
                                                               {1, 1}}));
  // Non-square input, odd sizes: stride-2 3x3 conv with padding 1 gives ceil(n / 2).
  EXPECT_EQ(out_sizes(build({{"type", "resnet"}}, InputShape{1, 9, 6}))[8],
            (std::pair<int64_t, int64_t>{3, 2}));
}

TEST(NetworkZoo, BuildLeavesTrainModeAndBatchNormStatisticsUntouched) {
  Network net = build({{"type", "resnet"}}, kCifar);
  EXPECT_TRUE(net->is_training());
  for (const auto& m : net->modules()) EXPECT_TRUE(m->is_training()) << m->name();
  for (const auto& b : net->named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) {
      EXPECT_EQ(b.value().abs().sum().item<double>(), 0.0) << b.key();
    }
    if (b.key().find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(b.value().item<int64_t>(), 0) << b.key();
    }
  }
  EXPECT_TRUE(torch::GradMode::is_enabled());
}

TEST(NetworkQuantLayer, DefaultInitMatchesPyTorch) {
  torch::manual_seed(3);
  auto fc = QuantLayerImpl::linear(784, 256);
  const double bound = 1.0 / std::sqrt(784.0);
  EXPECT_LE(fc->weight.abs().max().item<double>(), bound);
  EXPECT_NEAR(fc->weight.std().item<double>(), bound / std::sqrt(3.0), 0.01 * bound);
  EXPECT_LE(fc->bias.abs().max().item<double>(), bound);
  auto conv = QuantLayerImpl::conv2d(16, 32, 3, 1, 1, true);
  const double cbound = 1.0 / std::sqrt(16.0 * 9.0);
  EXPECT_EQ(conv->weight.sizes(), (std::vector<int64_t>{32, 16, 3, 3}));
  EXPECT_LE(conv->weight.abs().max().item<double>(), cbound);
  EXPECT_GT(conv->weight.abs().max().item<double>(), 0.9 * cbound);
  EXPECT_LE(conv->bias.abs().max().item<double>(), cbound);
  EXPECT_FALSE(QuantLayerImpl::conv2d(16, 32, 3, 1, 1, false)->bias.defined());
  EXPECT_EQ(fc->named_parameters().size(), 2u);
}

TEST(NetworkQuantLayer, WeightTransformIsUsedByForwardAndCleared) {
  torch::manual_seed(0);
  Network net = build({{"type", "mlp"}, {"hidden", {256}}});
  const auto x = input_batch(kMnist);
  const auto ref = net->forward(x);
  const auto zero = [](const torch::Tensor& w) { return torch::zeros_like(w); };
  for (int64_t i = 0; i < net->num_quant_layers(); ++i) net->layer(i)->set_weight_transform(zero);
  // All weights zero: the logits are the output bias in every row.
  const auto out = net->forward(x);
  EXPECT_TRUE(torch::equal(out, net->layer(1)->bias.expand({4, 10})));
  EXPECT_TRUE(torch::equal(net->layer(0)->effective_weight(), torch::zeros({256, 784})));
  for (int64_t i = 0; i < net->num_quant_layers(); ++i) net->layer(i)->clear_weight_transform();
  EXPECT_TRUE(torch::equal(net->forward(x), ref));
  EXPECT_TRUE(net->layer(0)->effective_weight().is_same(net->layer(0)->weight));

  // Conv layers too.
  auto conv = QuantLayerImpl::conv2d(3, 4, 3, 1, 1, true);
  conv->set_weight_transform(zero);
  const auto y = conv->forward(torch::randn({2, 3, 5, 5}));
  EXPECT_TRUE(torch::equal(y, conv->bias.view({1, 4, 1, 1}).expand({2, 4, 5, 5})));
}

TEST(NetworkQuantLayer, GradientFlowsThroughTheTransform) {
  torch::manual_seed(0);
  auto fc = QuantLayerImpl::linear(5, 3);
  const auto x = torch::randn({4, 5});
  fc->set_weight_transform([](const torch::Tensor& w) { return 3 * w; });
  fc->forward(x).pow(2).sum().backward();
  ASSERT_TRUE(fc->weight.grad().defined());
  // Reference: autograd through the same transform on a detached copy.
  auto w = fc->weight.detach().clone().requires_grad_(true);
  torch::linear(x, 3 * w, fc->bias.detach()).pow(2).sum().backward();
  EXPECT_TRUE(torch::allclose(fc->weight.grad(), w.grad()));
}

TEST(NetworkQuantLayer, TransformOfWrongShapeIsRejected) {
  auto fc = QuantLayerImpl::linear(5, 3);
  fc->set_weight_transform([](const torch::Tensor& w) { return w.t(); });
  EXPECT_THROW(fc->forward(torch::randn({2, 5})), c10::Error);
}

TEST(NetworkActivation, ReluUnlessTransformed) {
  Activation act;
  const auto x = torch::randn({3, 7});
  EXPECT_FALSE(act->has_transform());
  EXPECT_TRUE(torch::equal(act->forward(x), torch::relu(x)));
  act->set_transform([](const torch::Tensor& t) { return 2 * t; });
  EXPECT_TRUE(act->has_transform());
  EXPECT_TRUE(torch::equal(act->forward(x), 2 * x));
  act->clear_transform();
  EXPECT_FALSE(act->has_transform());
  EXPECT_TRUE(torch::equal(act->forward(x), torch::relu(x)));
}

TEST(NetworkActivation, NetworkUsesTheActivationTransform) {
  torch::manual_seed(0);
  const InputShape in{1, 4, 4};
  Network net = build({{"type", "mlp"}, {"hidden", {5}}}, in, 3);
  ASSERT_EQ(net->activations().size(), 1u);
  net->activation(0)->set_transform([](const torch::Tensor& t) { return t; });
  const auto x = input_batch(in, 6);
  auto& l0 = net->layer(0);
  auto& l1 = net->layer(1);
  // Identity activation: the MLP is affine.
  const auto expected =
      torch::linear(torch::linear(x.flatten(1), l0->weight, l0->bias), l1->weight, l1->bias);
  EXPECT_TRUE(torch::allclose(net->forward(x), expected, 1e-5, 1e-6));
  net->activation(0)->clear_transform();
  const auto relu_expected = torch::linear(
      torch::relu(torch::linear(x.flatten(1), l0->weight, l0->bias)), l1->weight, l1->bias);
  EXPECT_TRUE(torch::allclose(net->forward(x), relu_expected, 1e-5, 1e-6));
}

TEST(NetworkZoo, SameSeedSameWeights) {
  for (const auto& type : network_types()) {
    SCOPED_TRACE(type);
    torch::manual_seed(42);
    Network a = build({{"type", type}}, kCifar);
    torch::manual_seed(42);
    Network b = build({{"type", type}}, kCifar);
    torch::manual_seed(43);
    Network c = build({{"type", type}}, kCifar);
    const auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    EXPECT_FALSE(torch::equal(a->layer(0)->weight, c->layer(0)->weight));
  }
}

TEST(NetworkZoo, BackwardReachesEveryParameter) {
  torch::manual_seed(0);
  std::vector<json> specs;
  for (const auto& type : network_types()) specs.push_back({{"type", type}});
  specs.push_back({{"type", "mlp"}, {"hidden", {16, 16}}, {"batchnorm", true}});
  for (const auto& spec : specs) {
    SCOPED_TRACE(spec.dump());
    Network net = build(spec, kCifar);
    const auto x = input_batch(kCifar, 4);
    const auto labels = torch::tensor({0, 3, 9, 1}, torch::kLong);
    torch::nn::functional::cross_entropy(net->forward(x), labels).backward();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    }
    for (int64_t i = 0; i < net->num_quant_layers(); ++i) {
      EXPECT_GT(net->layer(i)->weight.grad().abs().sum().item<double>(), 0.0) << i;
    }
  }
}

TEST(NetworkZoo, DefaultsAreFilledIntoTheSpec) {
  EXPECT_EQ(build({{"type", "mlp"}})->spec(),
            json({{"type", "mlp"}, {"hidden", {256}}, {"batchnorm", false}}));
  EXPECT_EQ(build({{"type", "lenet"}})->spec(),
            json({{"type", "lenet"}, {"channels", {6, 16}}, {"fc", {120, 84}}}));
  EXPECT_EQ(build({{"type", "vgg"}})->spec(),
            json({{"type", "vgg"}, {"blocks", {32, "M", 64, "M", 128, "M"}}, {"fc", {256}}}));
  EXPECT_EQ(build({{"type", "resnet"}})->spec(),
            json({{"type", "resnet"}, {"depth", 8}, {"width", 16}}));
}

TEST(NetworkZoo, WrongInputShapeIsAClearError) {
  Network net = build({{"type", "lenet"}}, kMnist);
  EXPECT_THROW(net->forward(input_batch(kCifar, 2)), c10::Error);
}

struct BadSpec {
  json spec;
  std::string needle;
  InputShape input = kMnist;
};

TEST(NetworkSpec, BadSpecsNameTheKey) {
  const std::vector<BadSpec> cases = {
      {json::array(), "network"},
      {json::object(), "network.type"},
      {{{"type", 3}}, "network.type"},
      {{{"type", "transformer"}}, "network.type"},
      {{{"type", "transformer"}}, "lenet, mlp, resnet, vgg"},
      {{{"type", "mlp"}, {"hiden", {3}}}, "network.hiden"},
      {{{"type", "mlp"}, {"hiden", {3}}}, "valid keys"},
      {{{"type", "mlp"}, {"depth", 8}}, "network.depth"},
      {{{"type", "mlp"}, {"hidden", {0}}}, "network.hidden[0]"},
      {{{"type", "mlp"}, {"hidden", {64, -1}}}, "network.hidden[1]"},
      {{{"type", "mlp"}, {"hidden", {3.5}}}, "network.hidden[0]"},
      {{{"type", "mlp"}, {"hidden", 256}}, "network.hidden"},
      {{{"type", "mlp"}, {"hidden", {"a"}}}, "network.hidden"},
      {{{"type", "mlp"}, {"batchnorm", 1}}, "network.batchnorm"},
      {{{"type", "lenet"}, {"channels", json::array()}}, "network.channels"},
      {{{"type", "lenet"}, {"channels", {6, 0}}}, "network.channels[1]"},
      {{{"type", "lenet"}, {"fc", {120, 0}}}, "network.fc[1]"},
      {{{"type", "lenet"}}, "network.channels", InputShape{1, 8, 8}},
      {{{"type", "lenet"}}, "too small", InputShape{1, 8, 8}},
      {{{"type", "lenet"}, {"channels", {6, 16, 32}}}, "too small"},
      {{{"type", "vgg"}, {"blocks", {32, "X"}}}, "network.blocks[1]"},
      {{{"type", "vgg"}, {"blocks", {32, 0}}}, "network.blocks[1]"},
      {{{"type", "vgg"}, {"blocks", {32, 1.5}}}, "network.blocks[1]"},
      {{{"type", "vgg"}, {"blocks", "M"}}, "network.blocks"},
      {{{"type", "vgg"}, {"blocks", json::array()}}, "network.blocks"},
      {{{"type", "vgg"}, {"blocks", {"M", "M"}}}, "at least one conv"},
      {{{"type", "vgg"}, {"blocks", {8, "M", "M", "M", "M", "M"}}}, "too small"},
      {{{"type", "vgg"}, {"blocks", {8, "M", "M", "M", "M", "M"}}}, "network.blocks"},
      {{{"type", "vgg"}, {"fc", {-3}}}, "network.fc[0]"},
      {{{"type", "resnet"}, {"depth", 7}}, "network.depth"},
      {{{"type", "resnet"}, {"depth", 10}}, "6n+2"},
      {{{"type", "resnet"}, {"depth", 2}}, "network.depth"},
      {{{"type", "resnet"}, {"depth", -4}}, "network.depth"},
      {{{"type", "resnet"}, {"depth", "8"}}, "network.depth"},
      {{{"type", "resnet"}, {"width", 0}}, "network.width"},
      {{{"type", "resnet"}, {"blocks", 3}}, "network.blocks"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec.dump());
    EXPECT_VALUE_ERROR(build(c.spec, c.input), c.needle);
    try {
      build(c.spec, c.input);
    } catch (const c10::ValueError& e) {
      const std::string msg = e.what_without_backtrace();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_EQ(msg.rfind("network spec: ", 0), 0u) << msg;
    }
  }
  EXPECT_VALUE_ERROR(build({{"type", "mlp"}}, kMnist, 0), "num_classes");
  EXPECT_VALUE_ERROR(build({{"type", "mlp"}}, InputShape{1, 0, 28}), "input shape");
}

TEST(NetworkSpec, ValidEdgeCases) {
  EXPECT_NO_THROW(build({{"type", "resnet"}, {"depth", 14}, {"width", 1}}));
  EXPECT_NO_THROW(build({{"type", "vgg"}, {"blocks", {8, "M", "M", "M", "M"}}}));  // 28 -> 1
  EXPECT_NO_THROW(build({{"type", "lenet"}}, InputShape{1, 12, 12}));
  EXPECT_NO_THROW(build({{"type", "resnet"}}, InputShape{2, 3, 3}));
}

}  // namespace
}  // namespace qsched::inner
