// Tests of the truncated ANA meta-gradient (meta/metagrad.h): the functional forward and
// gradient equal the trainer's network, the unroll reproduces a trainer epoch, dJ/dsigma equals
// central finite differences in double precision, K = 0, determinism, bad input.
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <string>

#include "inner/ana/ana.h"
#include "inner/ana/differentiable.h"
#include "meta/metagrad.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched {
namespace {

using inner::Trainer;
using inner::ana::AnaAlgorithm;
using inner::ana::AnaMlpFunction;
using meta::metagrad;
using meta::MetaGradOptions;
using meta::MetaGradResult;

json ana_config(const json& ana, int64_t epochs = 4) {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "ana";
  j["ana"] = ana;
  return j;
}

AnaAlgorithm& ana_of(Trainer& t) { return dynamic_cast<AnaAlgorithm&>(t.algorithm()); }

/// Puts every quantizer of the trainer at unit levels `sigma`, as AnaAlgorithm does each epoch.
void set_sigma(Trainer& t, const std::vector<double>& sigma) {
  auto& a = ana_of(t);
  const auto& o = a.options();
  auto configure = [&](inner::ana::QuantizerState& s, double sig) {
    s.forward_scale = o.native(o.noise, sig);
    s.backward_scale =
        o.native(o.backward_noise, std::max(o.backward_ratio * sig, o.backward_floor));
  };
  ASSERT_EQ(sigma.size(), a.units().size());
  for (size_t j = 0; j < sigma.size(); ++j) {
    configure(*a.units()[j].weight, sigma[j]);
    for (auto& s : a.units()[j].act) configure(*s, o.activation_sigma_ratio * sigma[j]);
  }
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

double max_abs(const torch::Tensor& a) { return a.abs().max().item<double>(); }

/// ANA sections exercised by the equivalence tests: noise families, scale rules, levels,
/// backward noise different from the forward one, weights only.
std::vector<json> ana_variants() {
  return {
      json::object(),
      {{"noise", "normal"}},
      {{"noise", "triangular"}, {"parametrization", "std"}},
      {{"noise", "logistic"}, {"activations", {{"sigma_ratio", 0.5}}}},
      {{"noise", "uniform"}, {"backward", {{"noise", "normal"}, {"ratio", 2.0}, {"floor", 0.1}}}},
      {{"weights", {{"levels", {{"bits", 3}}}, {"scale", "max_abs"}, {"scale_update", "fixed"}}},
       {"activations", {{"levels", {{"bits", 2}, {"signed", false}}}}}},
      {{"weights", {{"levels", "binary"}}}, {"activations", {{"enabled", false}}}},
      {{"exclude", {"last"}}, {"noise", "normal"}},
  };
}

TEST(MetaGradOptions, DefaultsAreValid) { EXPECT_NO_THROW(MetaGradOptions().validate()); }

TEST(AnaMlpFunction, ForwardEqualsTheTrainersNetwork) {
  for (const json& ana : ana_variants()) {
    SCOPED_TRACE(ana.dump());
    auto t = test::make_trainer(ana_config(ana));
    t->run(1);
    AnaMlpFunction fn(*t);
    auto p = fn.parameters(*t, torch::kFloat);
    auto x = t->data().val.images;
    auto& net = *t->network();
    const int64_t U = fn.num_units();
    for (double s : {0.0, 0.15, 0.3, 0.8}) {
      std::vector<double> sigma(U, s);
      sigma[0] = s * 0.7;  // distinct per unit
      set_sigma(*t, sigma);
      torch::NoGradGuard ng;
      net.train();
      torch::Tensor ref = net.forward(x);
      torch::Tensor got = fn.forward(p, x, torch::tensor(sigma));
      EXPECT_LT(max_abs_diff(got, ref), 1e-5 * std::max(1.0, max_abs(ref))) << "sigma " << s;
    }
    // Evaluation (hard) equals sigma = 0.
    torch::NoGradGuard ng;
    net.eval();
    torch::Tensor ref = net.forward(x);
    net.train();
    torch::Tensor got = fn.forward(p, x, torch::zeros({U}));
    EXPECT_LT(max_abs_diff(got, ref), 1e-5 * std::max(1.0, max_abs(ref)));
  }
}

TEST(AnaMlpFunction, GradientEqualsTheTrainersBackward) {
  for (const json& ana : ana_variants()) {
    SCOPED_TRACE(ana.dump());
    auto t = test::make_trainer(ana_config(ana));
    t->run(1);
    AnaMlpFunction fn(*t);
    auto p = fn.parameters(*t, torch::kFloat);
    auto x = t->data().train.images.slice(0, 0, 64), y = t->data().train.labels.slice(0, 0, 64);
    auto& net = *t->network();
    net.train();
    // Below the backward floor (s_b = floor) and above it (s_b = ratio sigma).
    for (double s : {0.0, 0.3, 0.7}) {
      std::vector<double> sigma(fn.num_units(), s);
      set_sigma(*t, sigma);
      net.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(net.forward(x), y);
      loss.backward();
      auto lg = fn.loss_and_grad(p, x, y, torch::tensor(sigma));
      EXPECT_NEAR(lg.loss.item<double>(), loss.item<double>(), 1e-5);
      for (int64_t l = 0; l < fn.num_layers(); ++l) {
        const auto& layer = net.layer(l);
        const double gw = max_abs(layer->weight.grad()), gb = max_abs(layer->bias.grad());
        EXPECT_GT(gw, 0.0);
        EXPECT_LT(max_abs_diff(lg.grads[2 * l], layer->weight.grad()), 1e-4 * gw)
            << "sigma " << s << " layer " << l;
        EXPECT_LT(max_abs_diff(lg.grads[2 * l + 1], layer->bias.grad()), 1e-4 * gb)
            << "sigma " << s << " layer " << l;
      }
    }
  }
}

TEST(MetaGrad, UnrollReproducesTrainerEpochs) {
  // SGD with momentum 0.9 and weight decay (synthetic_config). Unrolling one (two) epochs with
  // the sigma the trainer used in its second (and third) epoch, one row per step, must land on
  // the trainer's weights: same batches, learning rates (a new one in the new epoch), momentum.
  for (const json& ana : {json::object(), json{{"noise", "normal"}}}) {
    SCOPED_TRACE(ana.dump());
    json cfg = ana_config(ana);
    auto a = test::make_trainer(cfg);
    a->run(1);
    const int64_t bs = cfg["train"]["batch_size"].get<int64_t>();
    const int64_t steps = (a->data().train.size() + bs - 1) / bs;
    std::vector<torch::Tensor> rows;
    for (int64_t epochs = 2; epochs <= 3; ++epochs) {
      auto b = test::make_trainer(cfg);
      b->run(epochs);
      std::vector<double> sigma;
      for (const auto& u : ana_of(*b).units()) sigma.push_back(u.sigma);
      rows.push_back(torch::tensor(sigma).unsqueeze(0).expand({steps, -1}));
      MetaGradResult r = metagrad(*a, torch::cat(rows), steps * (epochs - 1));
      AnaMlpFunction fn(*b);
      auto want = fn.parameters(*b, torch::kFloat);
      ASSERT_EQ(r.final_parameters.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_LT(max_abs_diff(r.final_parameters[i], want[i]), 2e-4 * max_abs(want[i]))
            << "parameter " << i << ", epochs " << epochs;
      EXPECT_NEAR(r.hard_loss, b->history().back()["val_loss"].get<double>(), 1e-4);
      EXPECT_NEAR(r.hard_acc, b->history().back()["val_acc"].get<double>(), 1e-9);
      EXPECT_NEAR(r.initial_hard_loss, a->history().back()["val_loss"].get<double>(), 1e-4);
    }
    EXPECT_FALSE(rows[0].equal(rows[1]));  // the schedule moved between the two epochs
    // The trainer itself is untouched.
    EXPECT_EQ(a->epoch(), 1);
    auto b = test::make_trainer(cfg);
    b->run(1);
    AnaMlpFunction fa(*a), fb(*b);
    auto pa = fa.parameters(*a, torch::kFloat), pb = fb.parameters(*b, torch::kFloat);
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].equal(pb[i]));
  }
}

/// Central differences of J over every entry of sigma, in double precision.
torch::Tensor finite_differences(Trainer& t, const torch::Tensor& sigma, int64_t K,
                                 const MetaGradOptions& o, double h) {
  torch::Tensor fd = torch::zeros_like(sigma);
  auto flat = fd.view({-1});
  for (int64_t i = 0; i < sigma.numel(); ++i) {
    torch::Tensor plus = sigma.clone(), minus = sigma.clone();
    plus.view({-1})[i] += h;
    minus.view({-1})[i] -= h;
    const double jp = metagrad(t, plus, K, o).meta_loss, jm = metagrad(t, minus, K, o).meta_loss;
    flat[i] = (jp - jm) / (2 * h);
  }
  return fd;
}

TEST(MetaGrad, EqualsCentralFiniteDifferencesInDouble) {
  // Tolerance: |autograd - fd| <= 1e-8 + 1e-6 |fd| per entry (entries are ~1e-3; measured
  // differences ~1e-9), h = 1e-7 (double: truncation O(h^2) on smooth pieces, rounding
  // O(1e-16 / h)).
  struct Case {
    json ana;
    bool last;
  };
  const std::vector<Case> cases = {
      {{{"noise", "uniform"}, {"activations", {{"enabled", false}}}}, false},
      {{{"noise", "uniform"}}, false},
      {{{"noise", "normal"}, {"activations", {{"enabled", false}}}}, false},
      {{{"noise", "normal"}}, false},
      // the backward scale follows sigma (floor below it), other eval sigma
      {{{"noise", "uniform"}, {"backward", {{"floor", 0.1}}}}, true},
      {{{"noise", "normal"}, {"backward", {{"floor", 0.1}, {"noise", "logistic"}}}}, true},
      {{{"noise", "triangular"}, {"parametrization", "std"}}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.ana.dump() + (c.last ? " eval at last sigma" : ""));
    auto t = test::make_trainer(ana_config(c.ana));
    t->run(1);
    MetaGradOptions o;
    o.dtype = torch::kDouble;
    o.eval_at_last_sigma = c.last;
    const int64_t K = 3;
    torch::Tensor sigma = torch::tensor({{0.35, 0.3}, {0.3, 0.27}, {0.26, 0.22}}, torch::kDouble);
    MetaGradResult r = metagrad(*t, sigma, K, o);
    ASSERT_EQ(r.dsigma.sizes(), sigma.sizes());
    torch::Tensor fd = finite_differences(*t, sigma, K, o, 1e-7);
    EXPECT_GT(fd.abs().max().item<double>(), 1e-6);  // a gradient that can be wrong
    auto ad = r.dsigma.view({-1}), f = fd.view({-1});
    for (int64_t i = 0; i < ad.numel(); ++i) {
      const double a = ad[i].item<double>(), b = f[i].item<double>();
      EXPECT_NEAR(a, b, 1e-8 + 1e-6 * std::abs(b)) << "entry " << i;
    }
  }
}

TEST(MetaGrad, SharedSigmaGetsTheSumOverSteps) {
  auto t = test::make_trainer(ana_config({{"noise", "normal"}}));
  t->run(1);
  MetaGradOptions o;
  o.dtype = torch::kDouble;
  torch::Tensor row = torch::tensor({0.3, 0.25}, torch::kDouble);
  auto shared = metagrad(*t, row, 3, o);
  auto per_step = metagrad(*t, row.unsqueeze(0).expand({3, 2}).contiguous(), 3, o);
  EXPECT_NEAR(shared.meta_loss, per_step.meta_loss, 1e-12);
  EXPECT_TRUE(torch::allclose(shared.dsigma, per_step.dsigma.sum(0), 1e-9, 1e-12));
}

TEST(MetaGrad, ZeroStepsGiveAZeroGradient) {
  auto t = test::make_trainer(ana_config(json::object()));
  t->run(1);
  AnaMlpFunction fn(*t);
  auto r = metagrad(*t, torch::tensor({0.3, 0.2}), 0);
  EXPECT_TRUE(r.dsigma.equal(torch::zeros({2})));
  auto p = fn.parameters(*t, torch::kFloat);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_TRUE(r.final_parameters[i].equal(p[i]));
  {
    torch::NoGradGuard ng;
    const auto& v = t->data().val;
    const double j =
        torch::nn::functional::cross_entropy(
            fn.forward(p, v.images, torch::full({2}, MetaGradOptions().eval_sigma)), v.labels)
            .item<double>();
    EXPECT_NEAR(r.meta_loss, j, 1e-6);
  }
  EXPECT_DOUBLE_EQ(r.hard_loss, r.initial_hard_loss);
  auto empty = metagrad(*t, torch::zeros({0, 2}), 0);
  EXPECT_EQ(empty.dsigma.sizes(), torch::IntArrayRef({0, 2}));
  // One step does move J through sigma.
  auto one = metagrad(*t, torch::tensor({0.3, 0.2}), 1);
  EXPECT_GT(one.dsigma.abs().max().item<double>(), 0.0);
}

TEST(MetaGrad, IsDeterministic) {
  json cfg = ana_config({{"noise", "uniform"}});
  auto a = test::make_trainer(cfg);
  auto b = test::make_trainer(cfg);
  a->run(1);
  b->run(1);
  torch::Tensor sigma = torch::tensor({{0.4, 0.3}, {0.35, 0.3}, {0.3, 0.2}, {0.3, 0.2}});
  MetaGradOptions o;
  o.val_samples = 100;
  auto r1 = metagrad(*a, sigma, 4, o);
  auto r2 = metagrad(*a, sigma, 4, o);
  auto r3 = metagrad(*b, sigma, 4, o);
  for (const auto* r : {&r2, &r3}) {
    EXPECT_EQ(r->meta_loss, r1.meta_loss);
    EXPECT_EQ(r->hard_loss, r1.hard_loss);
    EXPECT_TRUE(r->dsigma.equal(r1.dsigma));
  }
  EXPECT_GT(r1.dsigma.abs().max().item<double>(), 0.0);
}

TEST(MetaGrad, ChainsIntoAControllerOutput) {
  // The outer loop's use: sigma computed from parameters theta; sigma.backward(dsigma).
  auto t = test::make_trainer(ana_config({{"noise", "normal"}}));
  t->run(1);
  torch::Tensor theta = torch::tensor({-1.0, -1.5}, torch::requires_grad());
  torch::Tensor sigma = torch::sigmoid(theta);  // a stand-in controller
  auto r = metagrad(*t, sigma, 2);
  sigma.backward(r.dsigma);
  torch::Tensor s = torch::sigmoid(theta.detach());
  EXPECT_TRUE(torch::allclose(theta.grad(), r.dsigma * s * (1 - s)));
}

TEST(MetaGrad, RejectsBadInput) {
  auto t = test::make_trainer(ana_config(json::object()));
  t->run(1);
  torch::Tensor ok = torch::tensor({0.3, 0.2});
  EXPECT_VALUE_ERROR(metagrad(*t, ok, -1), "K >= 0");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::tensor({0.3, -0.1}), 2), ">= 0");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::tensor({0.3, std::nan("")}), 2), "finite");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::tensor({0.3, 0.2, 0.1}), 2), "one per ANA unit");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::zeros({3, 2}), 2), "one per ANA unit");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::zeros({2, 2, 2}), 2), "one per ANA unit");
  EXPECT_VALUE_ERROR(metagrad(*t, torch::tensor({1, 0}), 2), "floating-point");
  MetaGradOptions o;
  o.eval_at_last_sigma = true;
  EXPECT_VALUE_ERROR(metagrad(*t, torch::zeros({0, 2}), 0, o), "no last step");
  o = MetaGradOptions();
  o.eval_sigma = -0.1;
  EXPECT_VALUE_ERROR(metagrad(*t, ok, 1, o), "eval_sigma");
  o = MetaGradOptions();
  o.val_samples = -1;
  EXPECT_VALUE_ERROR(metagrad(*t, ok, 1, o), "val_samples");
  o = MetaGradOptions();
  o.dtype = torch::kHalf;
  EXPECT_VALUE_ERROR(metagrad(*t, ok, 1, o), "dtype");
  AnaMlpFunction fn(*t);
  EXPECT_VALUE_ERROR(fn.forward(fn.parameters(*t, torch::kFloat), t->data().val.images, ok[0]),
                     "one per unit");

  auto flt = test::make_trainer(test::synthetic_config(2));
  EXPECT_VALUE_ERROR(metagrad(*flt, ok, 1), "differentiable in its schedule values");
  auto mode = test::make_trainer(ana_config({{"strategy", "mode"}}));
  mode->run(1);
  EXPECT_VALUE_ERROR(metagrad(*mode, ok, 1), "expectation");
  json adam_cfg = ana_config(json::object());
  adam_cfg["train"]["optimizer"] = {{"name", "adam"}, {"lr", 0.001}};
  auto adam = test::make_trainer(adam_cfg);
  adam->run(1);
  EXPECT_VALUE_ERROR(metagrad(*adam, ok, 1), "\"sgd\"");
  auto pre = test::make_trainer(ana_config({{"pretrain_epochs", 2}}));
  pre->run(1);
  EXPECT_VALUE_ERROR(metagrad(*pre, ok, 1), "has not started");
  json lenet = ana_config(json::object());
  lenet["network"] = {{"type", "lenet"}, {"channels", {4}}, {"fc", {8}}};
  auto ln = test::make_trainer(lenet);
  EXPECT_VALUE_ERROR(metagrad(*ln, torch::zeros({5}), 1), "\"mlp\"");
}

// ---------------------------------------------------------------------------------------------
// Cost on the Fashion-MNIST MLP (README "Meta-gradient (ANA)"); not part of the suite:
//   build/tests/test_meta --gtest_also_run_disabled_tests --gtest_filter='*Cost*'

int64_t proc_kib(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

TEST(MetaGrad, DISABLED_CostOnFashionMnistMlp) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!std::ifstream(root + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "no " << root;
  json cfg = json::parse(R"({
    "seed": 0, "threads": 1, "algorithm": "ana",
    "data": {"format": "idx", "root": "/usr/share/datasets/fashion-mnist", "val_size": 5000},
    "network": {"type": "mlp", "hidden": [256]},
    "train": {"epochs": 15, "batch_size": 128,
              "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001}},
    "ana": {"backward": {"floor": 0.5}}
  })");
  auto t = test::make_trainer(cfg);
  auto plain = test::make_trainer(cfg);
  t->run(1);
  plain->run(1);
  auto& net = *plain->network();
  const auto& train = plain->data().train;
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a) {
    return std::chrono::duration<double>(Clock::now() - a).count();
  };
  MetaGradOptions o;
  o.val_samples = 1000;
  std::printf(
      "K   plain_s  metagrad_s  ratio  (metagrad-K0)/plain  peak_rss_growth_MiB  J  hard\n");
  double t0 = 0;
  for (int64_t K : {0, 5, 10, 20}) {
    double best_plain = 1e9, best_meta = 1e9;
    MetaGradResult r;
    int64_t growth = 0;
    for (int rep = 0; rep < 3; ++rep) {
      auto a = Clock::now();
      for (int64_t k = 0; k < K; ++k) {
        auto x = train.images.slice(0, k * 128, (k + 1) * 128);
        auto y = train.labels.slice(0, k * 128, (k + 1) * 128);
        plain->optimizer().zero_grad();
        torch::nn::functional::cross_entropy(net.forward(x), y).backward();
        plain->optimizer().step();
      }
      best_plain = std::min(best_plain, seconds(a));
      malloc_trim(0);  // return cached free memory, so the peak measures this call
      std::ofstream("/proc/self/clear_refs") << "5";  // reset the peak RSS
      const int64_t before = proc_kib("VmRSS");
      a = Clock::now();
      r = metagrad(*t, torch::full({2}, 0.3), K, o);
      best_meta = std::min(best_meta, seconds(a));
      growth = std::max(growth, proc_kib("VmHWM") - before);
    }
    if (K == 0) t0 = best_meta;
    std::printf("%-3ld %8.4f %11.4f %6.2f %19.2f %20.1f %.4f %.4f\n", static_cast<long>(K),
                best_plain, best_meta, K ? best_meta / best_plain : 0.0,
                K ? (best_meta - t0) / best_plain : 0.0, growth / 1024.0, r.meta_loss, r.hard_loss);
  }
}

}  // namespace
}  // namespace qsched
