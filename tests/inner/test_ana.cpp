// ANA: the quantizer operator against independent references (scalar formulas, Monte Carlo,
// finite differences), options, and the algorithm inside the trainer.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/runtime.h"
#include "inner/trainer.h"
#include "schedules/factory.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;
using namespace qsched::inner::ana;

namespace {

const std::vector<NoiseFamily> kFamilies = {NoiseFamily::kUniform, NoiseFamily::kTriangular,
                                            NoiseFamily::kNormal, NoiseFamily::kLogistic};

std::vector<Levels> quantizers() {
  return {Levels::binary(), Levels::ternary(), Levels::uniform(2, false, false)};
}

// --- Scalar references, written from the textbook formulas (not from the tensor code) ---

double ref_cdf(NoiseFamily f, double u, double s) {
  switch (f) {
    case NoiseFamily::kUniform:
      return u <= -s ? 0.0 : u >= s ? 1.0 : (u + s) / (2 * s);
    case NoiseFamily::kTriangular:
      if (u <= -s) return 0.0;
      if (u >= s) return 1.0;
      return u <= 0 ? (s + u) * (s + u) / (2 * s * s) : 1.0 - (s - u) * (s - u) / (2 * s * s);
    case NoiseFamily::kNormal:
      return 0.5 * std::erfc(-u / (s * std::sqrt(2.0)));
    case NoiseFamily::kLogistic:
      return 1.0 / (1.0 + std::exp(-u / s));
  }
  return 0;
}

double ref_pdf(NoiseFamily f, double u, double s) {
  switch (f) {
    case NoiseFamily::kUniform:
      return std::abs(u) < s ? 0.5 / s : 0.0;
    case NoiseFamily::kTriangular:
      return std::abs(u) < s ? (s - std::abs(u)) / (s * s) : 0.0;
    case NoiseFamily::kNormal:
      return std::exp(-u * u / (2 * s * s)) / (s * std::sqrt(2 * M_PI));
    case NoiseFamily::kLogistic: {
      double e = std::exp(-std::abs(u) / s);
      return e / (s * (1 + e) * (1 + e));
    }
  }
  return 0;
}

double ref_std(NoiseFamily f, double s) {
  switch (f) {
    case NoiseFamily::kUniform:
      return s / std::sqrt(3.0);
    case NoiseFamily::kTriangular:
      return s / std::sqrt(6.0);
    case NoiseFamily::kNormal:
      return s;
    case NoiseFamily::kLogistic:
      return s * M_PI / std::sqrt(3.0);
  }
  return 0;
}

double ref_hard(double x, const std::vector<double>& q) {
  double y = q[0];
  for (size_t i = 1; i < q.size(); ++i) y += (q[i] - q[i - 1]) * (x >= 0.5 * (q[i] + q[i - 1]));
  return y;
}

torch::Tensor dvec(const std::vector<double>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kDouble));
}

std::vector<double> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor grid(double lo, double hi, int64_t n) {
  return torch::linspace(lo, hi, n, torch::TensorOptions().dtype(torch::kDouble));
}

at::Generator gen(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

/// v (a float32 value) is q * eps rounded to float32 for some level q.
bool in_levels(double v, const Levels& lv, double eps) {
  for (double q : lv.values)
    if (v == static_cast<double>(static_cast<float>(eps * q)) ||
        v == static_cast<double>(static_cast<float>(static_cast<float>(eps) * q)))
      return true;
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Levels

TEST(AnaLevels, BuiltInsHaveMidwayThresholds) {
  EXPECT_EQ(Levels::binary().values, (std::vector<double>{-1, 1}));
  EXPECT_EQ(Levels::binary().thresholds, (std::vector<double>{0}));
  EXPECT_EQ(Levels::ternary().values, (std::vector<double>{-1, 0, 1}));
  EXPECT_EQ(Levels::ternary().thresholds, (std::vector<double>{-0.5, 0.5}));
  EXPECT_EQ(Levels::uniform(2, true, false).values, (std::vector<double>{-2, -1, 0, 1}));
  EXPECT_EQ(Levels::uniform(2, true, true).values, (std::vector<double>{-1, 0, 1}));
  EXPECT_EQ(Levels::uniform(2, false, false).values, (std::vector<double>{0, 1, 2, 3}));
  EXPECT_EQ(Levels::uniform(2, false, false).thresholds, (std::vector<double>{0.5, 1.5, 2.5}));
  EXPECT_EQ(Levels::uniform(4, true, false).size(), 16);
  EXPECT_EQ(Levels::custom({-2, 0.5, 3}).thresholds, (std::vector<double>{-0.75, 1.75}));
  EXPECT_EQ(Levels::from_json("ternary", "x").values, Levels::ternary().values);
  EXPECT_EQ(Levels::from_json(json{{"bits", 3}, {"signed", false}}, "x").size(), 8);
  EXPECT_EQ(Levels::from_json(json::array({0, 1}), "x").thresholds, (std::vector<double>{0.5}));
}

TEST(AnaLevels, RejectsBadLevels) {
  EXPECT_VALUE_ERROR(Levels::from_json(json::array({0, 1, 1}), "ana.weights.levels"),
                     "ana.weights.levels[2] = 1 <= 1. Violated constraint: levels are strictly "
                     "increasing");
  EXPECT_VALUE_ERROR(Levels::from_json(json::array({1, 0}), "x"), "strictly increasing");
  EXPECT_VALUE_ERROR(Levels::from_json(json::array({1}), "x"), "at least 2 levels");
  EXPECT_VALUE_ERROR(Levels::from_json("quaternary", "x"), "is not one of: binary, ternary");
  EXPECT_VALUE_ERROR(Levels::from_json(json{{"bits", 0}}, "x"), "1 <= bits <= 8");
  EXPECT_VALUE_ERROR(Levels::from_json(json{{"bits", 1}, {"signed", true}}, "x"), "binary");
  EXPECT_VALUE_ERROR(Levels::from_json(json{{"bits", 2}, {"sign", true}}, "x"), "unknown key");
}

// ---------------------------------------------------------------------------------------------
// Noise families

TEST(AnaNoise, CdfAndPdfMatchTheScalarFormulas) {
  auto u = grid(-3, 3, 241);
  for (auto f : kFamilies)
    for (double s : {0.3, 1.0}) {
      auto F = to_vec(noise_cdf(f, u, s)), p = to_vec(noise_pdf(f, u, s));
      auto uv = to_vec(u);
      for (size_t i = 0; i < uv.size(); ++i) {
        EXPECT_NEAR(F[i], ref_cdf(f, uv[i], s), 1e-12) << to_string(f) << " u=" << uv[i];
        if (std::abs(std::abs(uv[i]) - s) > 1e-9) {  // uniform's pdf jumps at +-s
          EXPECT_NEAR(p[i], ref_pdf(f, uv[i], s), 1e-12) << to_string(f) << " u=" << uv[i];
        }
      }
    }
}

TEST(AnaNoise, SamplesHaveTheDistributionOfTheFamily) {
  // 1e5 samples: mean within 5 standard errors of 0, std within 2%, Kolmogorov distance to
  // the CDF < 0.01 (the 1% critical value for n = 1e5 is 0.0052).
  const int64_t n = 100000;
  auto like = torch::empty({n}, torch::kDouble);
  for (auto f : kFamilies) {
    const double s = 0.7;
    auto x = sample_noise(f, like, s, gen(11));
    double sd = ref_std(f, s);
    EXPECT_NEAR(x.mean().item<double>(), 0.0, 5 * sd / std::sqrt(n)) << to_string(f);
    EXPECT_NEAR(x.std().item<double>(), sd, 0.02 * sd) << to_string(f);
    auto sorted = to_vec(std::get<0>(x.sort()));
    double ks = 0;
    for (int64_t i = 0; i < n; i += 97)
      ks = std::max(ks, std::abs(ref_cdf(f, sorted[i], s) - (i + 0.5) / n));
    EXPECT_LT(ks, 0.01) << to_string(f);
  }
}

TEST(AnaNoise, StdParametrizationMeansStandardDeviation) {
  AnaOptions o = AnaOptions::from_json({{"parametrization", "std"}});
  const double sigma = 0.4;
  auto like = torch::empty({100000}, torch::kDouble);
  for (auto f : kFamilies) {
    auto x = sample_noise(f, like, o.native(f, sigma), gen(5));
    EXPECT_NEAR(x.std().item<double>(), sigma, 0.02 * sigma) << to_string(f);
  }
  AnaOptions native = AnaOptions::from_json(json::object());
  EXPECT_EQ(native.native(NoiseFamily::kUniform, 0.5), 0.5);  // half-width
  EXPECT_NEAR(o.native(NoiseFamily::kUniform, 1.0), std::sqrt(3.0), 1e-15);
  EXPECT_NEAR(o.native(NoiseFamily::kLogistic, 1.0), std::sqrt(3.0) / M_PI, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// The operator

TEST(AnaQuantizer, HardMatchesTheStepSumIncludingThresholds) {
  // Equally spaced levels use floor((x - theta_1) / spacing): exact at the thresholds
  // themselves, and values within a few ulp of (theta_K - theta_1) of a threshold may go
  // either way; the grid points below keep 1e-12 away from thresholds.
  auto all = quantizers();
  all.push_back(Levels::uniform(4, true, false));                       // 15 thresholds, floor path
  all.push_back(Levels::custom({-3, -1, 0, 0.25, 2}));                  // per-threshold path
  all.push_back(Levels::custom({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.5}));  // binary-search path
  for (const auto& lv : all) {
    std::vector<double> xs;
    for (double v : to_vec(grid(-4, 11, 301))) {
      bool near = false;
      for (double t : lv.thresholds) near = near || std::abs(v - t) < 1e-12;
      if (!near) xs.push_back(v);
    }
    for (double t : lv.thresholds) xs.push_back(t);  // H(0) = 1: exactly at theta -> upper level
    auto y = to_vec(hard_quantize(dvec(xs), lv));
    for (size_t i = 0; i < xs.size(); ++i)
      EXPECT_EQ(y[i], ref_hard(xs[i], lv.values)) << lv.name << " x=" << xs[i];
    auto yf = hard_quantize(dvec(xs).to(torch::kFloat), lv);
    EXPECT_EQ(yf.scalar_type(), torch::kFloat);
  }
  EXPECT_EQ(to_vec(hard_quantize(dvec({-0.5, 0.5, 0.49}), Levels::ternary())),
            (std::vector<double>{0, 1, 0}));
}

TEST(AnaQuantizer, ExpectationEqualsMonteCarloMean) {
  // For every family and quantizer: E[Q(x + nu)] (analytic) vs the mean of Q(x + nu) over
  // N = 1e5 noise samples, at 41 points. Tolerance: 5 standard errors of the MC mean plus
  // 5 (q_K - q_0) / N for tail events too rare to show up in N samples.
  const int64_t N = 100000;
  auto x = grid(-2.5, 3.5, 41);
  for (const auto& lv : quantizers())
    for (auto f : kFamilies) {
      const double s = 0.6;
      auto nu = sample_noise(f, torch::empty({1, N}, torch::kDouble), s, gen(17));
      auto samples = hard_quantize(x.unsqueeze(1) + nu, lv);
      auto mean = to_vec(samples.mean(1)), se = to_vec(samples.std(1) / std::sqrt(double(N)));
      auto e = to_vec(expected_quantize(x, lv, f, s));
      for (int64_t i = 0; i < x.size(0); ++i)
        EXPECT_NEAR(e[i], mean[i], 5 * se[i] + 5 * (lv.values.back() - lv.values[0]) / N)
            << lv.name << " " << to_string(f) << " x=" << x[i].item<double>();
    }
}

TEST(AnaQuantizer, GradientEqualsCentralDifferenceOfTheExpectation) {
  // Autograd through ana_quantize (backward family and scale = forward's) vs
  // (E(x + h) - E(x - h)) / 2h, h = 1e-6, double precision, away from the kinks of the
  // compact families (theta +- s and theta).
  const double h = 1e-6;
  for (const auto& lv : quantizers())
    for (auto f : kFamilies)
      for (double s : {0.25, 0.8}) {
        std::vector<double> xs;
        for (double v : to_vec(grid(-2.7, 3.7, 97))) {
          bool near_kink = false;
          for (double t : lv.thresholds)
            for (double k : {t - s, t, t + s}) near_kink = near_kink || std::abs(v - k) < 1e-4;
          if (!near_kink) xs.push_back(v);
        }
        auto x = dvec(xs).requires_grad_(true);
        QuantOp op;
        op.levels = &lv;
        op.forward_noise = op.backward_noise = f;
        op.forward_scale = op.backward_scale = s;
        ana_quantize(x, op).sum().backward();
        auto g = to_vec(x.grad());
        auto xd = dvec(xs);
        auto fd = to_vec(
            (expected_quantize(xd + h, lv, f, s) - expected_quantize(xd - h, lv, f, s)) / (2 * h));
        double max_err = 0;
        for (size_t i = 0; i < xs.size(); ++i) max_err = std::max(max_err, std::abs(g[i] - fd[i]));
        EXPECT_LT(max_err, 1e-6) << lv.name << " " << to_string(f) << " s=" << s;
        // And the scalar formula sum_i dq_i p(x - theta_i).
        for (size_t i = 0; i < xs.size(); ++i) {
          double r = 0;
          for (size_t k = 0; k < lv.thresholds.size(); ++k)
            r += (lv.values[k + 1] - lv.values[k]) * ref_pdf(f, xs[i] - lv.thresholds[k], s);
          EXPECT_NEAR(g[i], r, 1e-12);
        }
      }
}

TEST(AnaQuantizer, SigmaToZeroGivesTheHardQuantizer) {
  auto x = grid(-3, 4, 701);
  for (const auto& lv : quantizers()) {
    auto hard = hard_quantize(x, lv);
    // Points at least 1e-3 from a threshold.
    auto far = torch::ones_like(x, torch::kBool);
    for (double t : lv.thresholds) far = far.logical_and((x - t).abs().gt(1e-3));
    for (auto f : kFamilies) {
      EXPECT_TRUE(expected_quantize(x, lv, f, 0.0).equal(hard));
      EXPECT_TRUE(mode_quantize(x, lv, f, 0.0).equal(hard));
      EXPECT_TRUE(random_quantize(x, lv, f, 0.0, gen(1)).equal(hard));
      for (auto st : {Strategy::kExpectation, Strategy::kMode, Strategy::kRandom}) {
        QuantOp op;
        op.levels = &lv;
        op.forward_noise = f;
        op.strategy = st;
        op.gen = gen(2);
        EXPECT_TRUE(ana_quantize(x, op).equal(hard)) << to_string(st);
      }
      // sigma -> 0: expectation converges to Q away from the thresholds (logistic's tail at
      // 1e-3 / 1e-5 = 100 scales is e^-100).
      auto e = expected_quantize(x, lv, f, 1e-5);
      EXPECT_LT((e - hard).abs().masked_select(far).max().item<double>(), 1e-9) << to_string(f);
      EXPECT_TRUE(mode_quantize(x, lv, f, 1e-5).masked_select(far).equal(hard.masked_select(far)));
      EXPECT_TRUE(random_quantize(x, lv, NoiseFamily::kUniform, 1e-5, gen(3))
                      .masked_select(far)
                      .equal(hard.masked_select(far)));
    }
  }
}

TEST(AnaQuantizer, ScaledGridEqualsScalingTheInput) {
  // Q on the grid eps * levels with noise eps * s equals eps * Q(x / eps) with noise s, in
  // value and gradient (what a fixed-scale quantizer relies on).
  const double eps = 0.37;
  for (const auto& lv : quantizers())
    for (auto f : kFamilies)
      for (auto st : {Strategy::kExpectation, Strategy::kMode, Strategy::kRandom}) {
        auto xs = grid(-1.5, 1.5, 83);
        const Levels scaled = lv.scaled(eps);
        QuantOp a, b;
        a.levels = &scaled;
        b.levels = &lv;
        a.strategy = b.strategy = st;
        a.forward_noise = b.forward_noise = a.backward_noise = b.backward_noise = f;
        a.forward_scale = 0.3 * eps;
        b.forward_scale = 0.3;
        a.backward_scale = 0.5 * eps;
        b.backward_scale = 0.5;
        a.gen = gen(9);
        b.gen = gen(9);
        auto x1 = xs.clone().requires_grad_(true), x2 = xs.clone().requires_grad_(true);
        auto y1 = ana_quantize(x1, a);
        auto y2 = ana_quantize(x2 / eps, b) * eps;
        y1.sum().backward();
        y2.sum().backward();
        EXPECT_LT((y1 - y2).abs().max().item<double>(), 1e-12) << lv.name << to_string(f);
        EXPECT_LT((x1.grad() - x2.grad()).abs().max().item<double>(), 1e-9) << lv.name;
      }
}

TEST(AnaQuantizer, UniformHalfWidthHalfOnTernaryIsHardtanh) {
  auto x = grid(-2, 2, 81);
  auto e = expected_quantize(x, Levels::ternary(), NoiseFamily::kUniform, 0.5);
  EXPECT_LT((e - x.clamp(-1, 1)).abs().max().item<double>(), 1e-12);
  // Binary levels (step 2): half-width 1 gives hardtanh.
  auto b = expected_quantize(x, Levels::binary(), NoiseFamily::kUniform, 1.0);
  EXPECT_LT((b - x.clamp(-1, 1)).abs().max().item<double>(), 1e-12);
}

TEST(AnaQuantizer, BackwardFloorGivesTheClippedStraightThroughEstimator) {
  // Forward hard (sigma = 0), backward uniform with half-width 0.5: dQ/dx = 1 on (-1, 1), 0
  // outside, for ternary; binary needs half-width 1 for the same.
  std::vector<double> xs = {-1.7, -1.01, -0.99, -0.5, -0.2, 0.0, 0.3, 0.5, 0.7, 0.99, 1.01, 2.5};
  for (auto [lv, s] : {std::pair{Levels::ternary(), 0.5}, std::pair{Levels::binary(), 1.0}}) {
    auto x = dvec(xs).requires_grad_(true);
    QuantOp op;
    op.levels = &lv;
    op.forward_scale = 0.0;
    op.backward_scale = s;
    auto y = ana_quantize(x, op);
    EXPECT_TRUE(y.detach().equal(hard_quantize(dvec(xs), lv)));
    y.sum().backward();
    auto g = to_vec(x.grad());
    for (size_t i = 0; i < xs.size(); ++i)
      EXPECT_EQ(g[i], std::abs(xs[i]) < 1 ? 1.0 : 0.0) << lv.name << " x=" << xs[i];
  }
  // Backward scale 0: gradients vanish (why the floor exists).
  auto lv = Levels::ternary();
  auto x = dvec({0.1, 0.6}).requires_grad_(true);
  QuantOp op;
  op.levels = &lv;
  ana_quantize(x, op).sum().backward();
  EXPECT_EQ(to_vec(x.grad()), (std::vector<double>{0, 0}));
}

TEST(AnaQuantizer, ModeIsTheMostLikelyLevel) {
  for (const auto& lv :
       {Levels::ternary(), Levels::uniform(2, false, false), Levels::custom({-1, 0, 3})})
    for (auto f : kFamilies)
      for (double s : {0.3, 0.8, 1.7}) {
        auto x = grid(-2.5, 4.5, 141);
        auto y = to_vec(mode_quantize(x, lv, f, s));
        auto xv = to_vec(x);
        for (size_t i = 0; i < xv.size(); ++i) {
          // Reference pmf from scalar CDFs.
          std::vector<double> pmf;
          for (size_t j = 0; j < lv.values.size(); ++j) {
            double lo = j == 0 ? 1.0 : ref_cdf(f, xv[i] - lv.thresholds[j - 1], s);
            double hi = j + 1 == lv.values.size() ? 0.0 : ref_cdf(f, xv[i] - lv.thresholds[j], s);
            pmf.push_back(lo - hi);
          }
          std::vector<double> sorted = pmf;
          std::sort(sorted.rbegin(), sorted.rend());
          if (sorted[0] - sorted[1] < 1e-9) continue;  // a tie: either answer is a mode
          size_t best = std::max_element(pmf.begin(), pmf.end()) - pmf.begin();
          EXPECT_EQ(y[i], lv.values[best])
              << lv.name << " " << to_string(f) << " s=" << s << " x=" << xv[i];
        }
        // The pmf sums to 1.
        auto pmf = level_pmf(x, lv, f, s);
        EXPECT_LT((pmf.sum(0) - 1).abs().max().item<double>(), 1e-12);
      }
}

TEST(AnaQuantizer, RandomSamplesLevelsWithTheirProbabilities) {
  // 1e5 draws at each of a few points: level frequencies within 5 standard errors of the pmf,
  // every output a level, the mean within 5 SE of the expectation. Seeded: reproducible.
  const int64_t N = 100000;
  auto lv = Levels::ternary();
  for (auto f : kFamilies) {
    const double s = 0.7;
    auto pts = dvec({-1.2, -0.4, 0.0, 0.35, 0.9});
    auto x = pts.unsqueeze(1).expand({5, N}).contiguous();
    auto y = random_quantize(x, lv, f, s, gen(23));
    EXPECT_TRUE(y.equal(random_quantize(x, lv, f, s, gen(23))));
    EXPECT_FALSE(y.equal(random_quantize(x, lv, f, s, gen(24))));
    auto member = y.eq(-1).logical_or(y.eq(0)).logical_or(y.eq(1));
    EXPECT_TRUE(member.all().item<bool>());
    auto pmf = level_pmf(pts, lv, f, s);  // [3, 5]
    for (int64_t j = 0; j < 3; ++j) {
      auto freq = to_vec(y.eq(lv.values[j]).to(torch::kDouble).mean(1));
      auto p = to_vec(pmf[j]);
      for (int64_t i = 0; i < 5; ++i)
        EXPECT_NEAR(freq[i], p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / N) + 1e-9)
            << to_string(f) << " level " << lv.values[j] << " x=" << pts[i].item<double>();
    }
    auto mean = to_vec(y.mean(1)), e = to_vec(expected_quantize(pts, lv, f, s));
    auto se = to_vec(y.std(1) / std::sqrt(double(N)));
    for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(mean[i], e[i], 5 * se[i] + 1e-9);
  }
}

TEST(AnaQuantizer, BackwardIsTheExpectationDerivativeForEveryStrategy) {
  auto lv = Levels::ternary();
  auto xs = grid(-2, 2, 57);
  for (auto fb : kFamilies) {
    auto ref = expected_quantize_grad(xs, lv, fb, 0.45);
    for (auto st : {Strategy::kExpectation, Strategy::kMode, Strategy::kRandom}) {
      auto x = xs.clone().requires_grad_(true);
      QuantOp op;
      op.levels = &lv;
      op.strategy = st;
      op.forward_noise = NoiseFamily::kNormal;  // forward and backward families may differ
      op.backward_noise = fb;
      op.forward_scale = 0.3;
      op.backward_scale = 0.45;
      op.gen = gen(4);
      (ana_quantize(x, op) * 2.0).sum().backward();
      EXPECT_LT((x.grad() - 2.0 * ref).abs().max().item<double>(), 1e-12) << to_string(st);
    }
  }
}

TEST(AnaQuantizer, WorksInFloatOnBatchShapes) {
  auto lv = Levels::ternary();
  auto x = torch::randn({4, 3, 5, 5}).requires_grad_(true);
  QuantOp op;
  op.levels = &lv;
  op.forward_scale = op.backward_scale = 0.5;
  auto y = ana_quantize(x, op);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  y.sum().backward();
  EXPECT_EQ(x.grad().sizes(), x.sizes());
  EXPECT_TRUE(y.detach().allclose(x.detach().clamp(-1, 1), 1e-6, 1e-6));
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(AnaOptions, DefaultsAreValid) {
  AnaOptions o = AnaOptions::from_json(json::object());
  EXPECT_EQ(o.weight_levels.name, "ternary");
  EXPECT_TRUE(o.activations);
  EXPECT_EQ(o.noise, NoiseFamily::kUniform);
  EXPECT_EQ(o.strategy, Strategy::kExpectation);
  EXPECT_EQ(o.backward_floor, 0.5);
  EXPECT_EQ(o.schedule["family"], "ana_window");
  auto sc = o.weight_scale.resolved(o.weight_levels);
  EXPECT_EQ(sc.rule, "mean_abs");
  EXPECT_EQ(sc.multiplier, 1.4);
  EXPECT_TRUE(o.weight_scale.dynamic);
  EXPECT_FALSE(AnaOptions::from_json({{"weights", {{"scale", 0.05}}}}).weight_scale.dynamic);
  EXPECT_FALSE(
      AnaOptions::from_json({{"weights", {{"scale_update", "fixed"}}}}).weight_scale.dynamic);
  EXPECT_EQ(ScaleOptions().resolved(Levels::binary()).multiplier, 1.0);
  EXPECT_EQ(ScaleOptions().resolved(Levels::uniform(4, true, false)).rule, "max_abs");
  auto w = torch::tensor({-0.2, 0.1, 0.3, -0.4}, torch::kDouble);
  EXPECT_NEAR(ScaleOptions().compute(w, Levels::ternary()), 1.4 * 0.25, 1e-12);
  EXPECT_NEAR(ScaleOptions().compute(w, Levels::uniform(2, true, false)), 0.4 / 2, 1e-12);
  json all = {{"weights", {{"levels", {{"bits", 3}}}, {"scale", 0.05}}},
              {"activations", {{"enabled", false}, {"levels", "binary"}, {"sigma_ratio", 0.5}}},
              {"noise", "logistic"},
              {"parametrization", "std"},
              {"strategy", "mode"},
              {"backward", {{"noise", "uniform"}, {"ratio", 0.0}, {"floor", 0.5}}},
              {"schedule", {{"family", "ana_window"}, {"layout", "progressive"}}},
              {"pretrain_epochs", 2},
              {"calibration_samples", 64},
              {"exclude", {"first", 3, "classifier.out"}}};
  AnaOptions p = AnaOptions::from_json(all);
  EXPECT_EQ(p.weight_levels.size(), 8);
  EXPECT_EQ(p.weight_scale.rule, "fixed");
  EXPECT_EQ(p.backward_noise, NoiseFamily::kUniform);
  EXPECT_EQ(p.exclude, (std::vector<std::string>{"first", "3", "classifier.out"}));
}

TEST(AnaOptions, BadInputIsOneLineNamingTheKey) {
  auto bad = [](const json& j) { return AnaOptions::from_json(j); };
  EXPECT_VALUE_ERROR(bad({{"noise", "gaussian"}}),
                     "config: ana.noise = \"gaussian\" is not one of: uniform, triangular, "
                     "normal, logistic");
  EXPECT_VALUE_ERROR(bad({{"strategy", "median"}}),
                     "config: ana.strategy = \"median\" is not one of: expectation, mode, random");
  EXPECT_VALUE_ERROR(bad({{"backward", {{"floor", -0.1}}}}),
                     "config: ana.backward.floor = -0.1. Violated constraint: floor >= 0");
  EXPECT_VALUE_ERROR(bad({{"backward", {{"noise", "cauchy"}}}}), "ana.backward.noise");
  EXPECT_VALUE_ERROR(bad({{"activations", {{"sigma_ratio", -1}}}}), "sigma_ratio >= 0");
  EXPECT_VALUE_ERROR(bad({{"weights", {{"levels", {-1, 1, 0}}}}}),
                     "ana.weights.levels[2] = 0 <= 1. Violated constraint: levels are strictly");
  EXPECT_VALUE_ERROR(bad({{"weights", {{"scale", -0.1}}}}), "a fixed scale is > 0");
  EXPECT_VALUE_ERROR(bad({{"weights", {{"scale", "median"}}}}), "ana.weights.scale");
  EXPECT_VALUE_ERROR(bad({{"weights", {{"scale", 0.1}, {"scale_update", "dynamic"}}}}),
                     "a dynamic scale needs a statistic scale");
  EXPECT_VALUE_ERROR(bad({{"weights", {{"scale_update", "always"}}}}), "ana.weights.scale_update");
  EXPECT_VALUE_ERROR(bad({{"activations", {{"scale_update", "dynamic"}}}}),
                     "unknown key 'ana.activations.scale_update'");
  EXPECT_VALUE_ERROR(bad({{"weight", json::object()}}), "unknown key 'ana.weight'");
  EXPECT_VALUE_ERROR(bad({{"parametrization", "variance"}}), "ana.parametrization");
  EXPECT_VALUE_ERROR(bad({{"exclude", "last"}}), "ana.exclude must be an array");
  EXPECT_VALUE_ERROR(bad({{"schedule", "linear"}}), "ana.schedule must be an object");
}

// ---------------------------------------------------------------------------------------------
// The algorithm in the trainer

namespace {

json ana_config(int64_t epochs, const json& ana = json::object()) {
  json j = test::synthetic_config(epochs);
  j["algorithm"] = "ana";
  j["ana"] = ana;
  return j;
}

using test::make_trainer;
using test::strip_time;

AnaAlgorithm& ana_of(Trainer& t) { return dynamic_cast<AnaAlgorithm&>(t.algorithm()); }

}  // namespace

TEST(AnaAlgorithm, UnitsPairLayersWithTheActivationsThatFollowThem) {
  json j = ana_config(3);
  j["network"] = {{"type", "mlp"}, {"hidden", {32, 16}}};
  auto t = make_trainer(j);
  const auto& u = ana_of(*t).units();
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[0].activations, (std::vector<int64_t>{0}));
  EXPECT_EQ(u[1].activations, (std::vector<int64_t>{1}));
  EXPECT_TRUE(u[2].activations.empty());
  EXPECT_EQ(u[2].name, "out");

  j["network"] = {{"type", "lenet"}, {"channels", {4, 8}}, {"fc", {16}}};
  j["data"]["synthetic"]["height"] = 16;
  j["data"]["synthetic"]["width"] = 16;
  j["ana"] = {{"exclude", {"last", "features.conv1"}}};
  auto l = make_trainer(j);
  const auto& lu = ana_of(*l).units();
  ASSERT_EQ(lu.size(), 2u);  // conv2, fc1
  EXPECT_EQ(lu[0].name, "features.conv2");
  EXPECT_EQ(lu[0].activations, (std::vector<int64_t>{1}));
  EXPECT_EQ(lu[1].activations, (std::vector<int64_t>{2}));
  // The excluded conv1's activation stays a ReLU.
  EXPECT_FALSE(l->network()->activations()[0]->has_transform());

  j["ana"] = {{"exclude", {"features.conv9"}}};
  EXPECT_VALUE_ERROR(make_trainer(j), "not a quantizable layer of this network");
  j["ana"] = {{"exclude", {7}}};
  EXPECT_VALUE_ERROR(make_trainer(j), "ana.exclude names layer 7");
}

TEST(AnaAlgorithm, BadSchedulesFailBeforeTraining) {
  // 3 epochs, 2 layers.
  json up = ana_config(3, {{"schedule",
                            {{"family", "table"},
                             {"quantity", "noise"},
                             {"values", {{0.3, 0.3}, {0.4, 0.1}, {0, 0}}}}}});
  EXPECT_VALUE_ERROR(make_trainer(up), "noise levels are non-increasing");
  json nz = ana_config(3, {{"schedule",
                            {{"family", "table"},
                             {"quantity", "noise"},
                             {"values", {{0.3, 0.3}, {0.2, 0.1}, {0, 0.1}}}}}});
  EXPECT_VALUE_ERROR(make_trainer(nz), "noise is 0 at the last epoch");
  json layers = ana_config(
      3, {{"schedule",
           {{"family", "table"}, {"quantity", "noise"}, {"values", {{0.3}, {0.2}, {0}}}}}});
  EXPECT_VALUE_ERROR(make_trainer(layers), "1 layers, the network has 2 quantized layers");
  json win = ana_config(3, {{"schedule", {{"family", "ana_window"}, {"window", 2}}}});
  EXPECT_VALUE_ERROR(make_trainer(win), "Violated constraint: noise reaches 0 by the last epoch");
  json inq = ana_config(3, {{"schedule", {{"family", "inq_paper"}}}});
  EXPECT_VALUE_ERROR(make_trainer(inq), "needs noise values");
  json pre = ana_config(3, {{"pretrain_epochs", 3}});
  EXPECT_VALUE_ERROR(make_trainer(pre), "pretrain_epochs < train.epochs");
}

TEST(AnaAlgorithm, SyntheticRunEndsHardQuantizedAndOnGrid) {
  test::TempDir dir;
  json j = ana_config(5, {{"schedule", {{"family", "ana_window"}, {"layout", "sequential"}}}});
  RunConfig cfg = parse_run_config(j);
  RunOptions opt;
  opt.out_dir = dir.file("run");
  opt.quiet = true;
  auto out = run_training(cfg, opt);
  const json& s = out.summary;
  EXPECT_EQ(s["algorithm"], "ana");
  EXPECT_EQ(s["quantized"], true);
  EXPECT_EQ(s["on_grid"], true);
  EXPECT_EQ(s["annealed"], true);
  EXPECT_EQ(s["max_grid_distance"], 0.0);
  EXPECT_EQ(s["quantizer"]["weights"]["levels"]["name"], "ternary");
  EXPECT_EQ(s["quantizer"]["noise"], "uniform");
  EXPECT_GT(s["test_acc"].get<double>(), 0.4) << s.dump();  // 4 classes: chance is 0.25
  EXPECT_EQ(s["quantized_layers"].size(), 2u);
  for (const auto& l : s["quantized_layers"]) {
    EXPECT_TRUE(l["on_grid"].get<bool>());
    EXPECT_GT(l["scale"].get<double>(), 0);
  }
  // schedule.json: one row per epoch, 0 at the end, non-increasing; metrics carry sigma.
  json sched = json::parse(read_whole_file(dir.file("run/schedule.json")));
  EXPECT_EQ(sched["quantity"], "noise");
  EXPECT_EQ(sched["epochs"], 5);
  EXPECT_EQ(sched["values"][4], (std::vector<double>{0, 0}));
  EXPECT_EQ(sched["values"][0], (std::vector<double>{0.5, 0.5}));
  auto rows = read_whole_file(dir.file("run/metrics.jsonl"));
  EXPECT_NE(rows.find("\"ana_sigma\""), std::string::npos);
  // The written summary is the returned one.
  EXPECT_EQ(json::parse(read_whole_file(dir.file("run/summary.json")))["on_grid"], true);
}

TEST(AnaAlgorithm, HardenedNetworkIsExactlyLevelsTimesScale) {
  for (const char* update : {"dynamic", "fixed"}) {
    SCOPED_TRACE(update);
    json j = ana_config(
        3, {{"strategy", "random"}, {"noise", "normal"}, {"weights", {{"scale_update", update}}}});
    auto t = make_trainer(j);
    t->run(3);
    json s = t->summary(Termination::kCompleted);
    EXPECT_EQ(s["quantized"], true);
    auto& alg = ana_of(*t);
    for (const auto& u : alg.units()) {
      auto w = t->network()->layer(u.layer)->weight;
      for (double v : to_vec(w)) EXPECT_TRUE(in_levels(v, u.weight->levels, u.weight->eps)) << v;
      // Evaluation-mode activations output levels times their scale.
      for (const auto& a : u.act) {
        auto y = a->apply(torch::randn({1000}) * 3 * a->eps, /*training=*/false);
        for (double v : to_vec(y)) EXPECT_TRUE(in_levels(v, a->levels, a->eps));
      }
    }
    EXPECT_EQ(alg.max_grid_distance(*t), 0.0);
    // Evaluation is deterministic and hard even with the random strategy.
    auto a = t->eval_on(t->data().test), b = t->eval_on(t->data().test);
    EXPECT_EQ(a.acc, b.acc);
    EXPECT_EQ(a.loss, b.loss);
  }
}

TEST(AnaAlgorithm, DynamicScaleFollowsTheWeights) {
  // Mid-run, a ternary layer's nonzero effective weights are +-1.4 mean|W| of the current
  // latent weights (not of the initial ones).
  auto t = make_trainer(ana_config(4));
  t->run(2);
  auto& layer = t->network()->layer(0);
  torch::NoGradGuard ng;
  ana_of(*t).before_eval(*t);
  auto w = layer->effective_weight();
  ana_of(*t).after_eval(*t);
  float eps = 1.4f * layer->weight.abs().mean().item<float>();
  auto nz = w.masked_select(w.ne(0)).abs();
  EXPECT_NEAR(nz.max().item<float>(), eps, 1e-6 * eps);
  EXPECT_NEAR(nz.min().item<float>(), eps, 1e-6 * eps);
  EXPECT_NE(eps, static_cast<float>(ana_of(*t).units()[0].weight->eps));  // the start value
}

TEST(AnaAlgorithm, EvaluationIsHardDuringTraining) {
  // Mid-run (sigma > 0) the trainer's evaluation uses sigma = 0: the network output equals
  // a manual forward with every quantizer in hard mode.
  json j = ana_config(4);
  auto t = make_trainer(j);
  t->run(1);
  auto& alg = ana_of(*t);
  ASSERT_GT(alg.units()[1].sigma, 0.0);
  auto x = t->data().val.images.slice(0, 0, 64);
  torch::NoGradGuard ng;
  t->network()->eval();
  auto y_eval = t->network()->forward(x);  // eval mode alone is hard
  t->network()->train();
  alg.before_eval(*t);
  auto y_hard = t->network()->forward(x);  // train mode, hard flag
  alg.after_eval(*t);
  auto y_soft = t->network()->forward(x);
  EXPECT_TRUE(y_eval.equal(y_hard));
  EXPECT_FALSE(y_soft.equal(y_hard));
}

TEST(AnaAlgorithm, ScalesComeFromWeightsAndCalibrationAndBatchNormIsUntouched) {
  json j = ana_config(2);
  j["network"] = {{"type", "mlp"}, {"hidden", {32}}, {"batchnorm", true}};
  auto t = make_trainer(j);
  auto w0 = t->network()->layer(0)->weight.detach().clone();
  std::vector<torch::Tensor> before;
  for (auto& b : t->network()->buffers()) before.push_back(b.clone());
  auto& alg = ana_of(*t);
  alg.on_epoch_start(*t, 0);
  EXPECT_TRUE(alg.started());
  EXPECT_NEAR(alg.units()[0].weight->eps, 1.4 * w0.abs().mean().item<double>(), 1e-7);
  EXPECT_GT(alg.units()[0].act[0]->eps, 0.0);
  auto after = t->network()->buffers();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i].equal(after[i]));
}

TEST(AnaAlgorithm, ResumeMidEpochMatchesUninterrupted) {
  // The random strategy draws from the algorithm's generator: its state is checkpointed too.
  test::TempDir dir;
  json j = ana_config(3, {{"strategy", "random"}});
  auto full = make_trainer(j);
  full->run(3);
  auto first = make_trainer(j);
  test::StopAt cb(1, 5);
  EXPECT_EQ(first->run(3, &cb, cb.token()), Termination::kInterrupted);
  first->save_checkpoint(dir.file("ck.pt"));
  auto second = make_trainer(j);
  second->load_checkpoint(dir.file("ck.pt"));
  EXPECT_EQ(second->run(3), Termination::kCompleted);
  EXPECT_EQ(strip_time(second->history()), strip_time(full->history()));
  json a = second->summary(Termination::kCompleted), b = full->summary(Termination::kCompleted);
  EXPECT_EQ(a["test_acc"], b["test_acc"]);
  EXPECT_EQ(a["quantized_layers"], b["quantized_layers"]);
}

TEST(AnaAlgorithm, RecordedScheduleReplaysExactly) {
  test::TempDir dir;
  json j = ana_config(
      4, {{"schedule", {{"family", "ana_window"}, {"layout", "progressive"}, {"alpha", 2.0}}}});
  RunOptions opt;
  opt.quiet = true;
  opt.out_dir = dir.file("a");
  run_training(parse_run_config(j), opt);
  json replay = j;
  replay["ana"]["schedule"] = {{"family", "file"}, {"path", dir.file("a/schedule.json")}};
  opt.out_dir = dir.file("b");
  run_training(parse_run_config(replay), opt);
  EXPECT_EQ(read_whole_file(dir.file("a/schedule.json")),
            read_whole_file(dir.file("b/schedule.json")));
  auto rows = [&](const std::string& d) {
    std::vector<json> r;
    std::istringstream in(read_whole_file(dir.file(d + "/metrics.jsonl")));
    for (std::string line; std::getline(in, line);) r.push_back(json::parse(line));
    return strip_time(r);
  };
  EXPECT_EQ(rows("a"), rows("b"));
}

TEST(AnaAlgorithm, PretrainEpochsAreFloat) {
  json j = ana_config(3, {{"pretrain_epochs", 1}, {"activations", {{"enabled", false}}}});
  auto t = make_trainer(j);
  t->run(1);
  EXPECT_FALSE(ana_of(*t).started());
  EXPECT_FALSE(t->history()[0].contains("ana_sigma"));
  t->run(3);
  EXPECT_TRUE(t->history()[1].contains("ana_sigma"));
  json s = t->summary(Termination::kCompleted);
  EXPECT_EQ(s["quantized"], true);
  EXPECT_EQ(s["activations_quantized"], false);
  EXPECT_EQ(ana_of(*t).driver().table().epochs(), 2);
}

TEST(AnaAlgorithm, LenetWithBinaryWeightsAndActivations) {
  json j = ana_config(2, {{"weights", {{"levels", "binary"}}},
                          {"activations", {{"levels", "binary"}}},
                          {"noise", "triangular"},
                          {"backward", {{"floor", 1.0}}},
                          {"schedule", {{"family", "ana_window"}, {"sigma0", 1.0}}}});
  j["network"] = {{"type", "lenet"}, {"channels", {4, 8}}, {"fc", {16}}};
  j["data"]["synthetic"]["height"] = 16;
  j["data"]["synthetic"]["width"] = 16;
  auto t = make_trainer(j);
  t->run(2);
  json s = t->summary(Termination::kCompleted);
  EXPECT_EQ(s["quantized"], true);
  EXPECT_EQ(s["quantized_layers"].size(), 4u);
  for (const auto& l : s["quantized_layers"]) {
    auto f = l["level_fractions"];  // binary: no zeros, the two fractions sum to 1
    EXPECT_NEAR(f[0].get<double>() + f[1].get<double>(), 1.0, 1e-12);
  }
}

TEST(AnaConfigs, ShippedFashionMnistConfigsAreValid) {
  for (const char* net : {"mlp", "lenet"})
    for (const char* lv : {"ternary", "binary"}) {
      std::string name = std::string("fmnist_") + net + "_ana_" + lv + ".json";
      SCOPED_TRACE(name);
      RunConfig cfg = parse_run_config(
          read_json_file(std::string(QSCHED_SOURCE_DIR) + "/experiments/configs/" + name));
      EXPECT_EQ(cfg.algorithm, "ana");
      AnaAlgorithm alg(cfg);
      EXPECT_EQ(alg.options().weight_levels.name, lv);
      EXPECT_EQ(alg.options().activation_levels.name, lv);
      EXPECT_TRUE(alg.options().activations);
      const int64_t layers =
          std::string(net) == "mlp" ? 2 : 5;  // lenet: conv1, conv2, fc1, fc2, out
      auto s = sched::make_schedule(alg.options().schedule, sched::Quantity::kNoise, name);
      auto table = sched::materialize(*s, cfg.train.epochs, layers, name);
      EXPECT_EQ(table.values.back(), std::vector<double>(layers, 0.0));
    }
}

TEST(AnaAlgorithm, StartsFromAFloatCheckpoint) {
  test::TempDir dir;
  json f = test::synthetic_config(2);
  auto flt = make_trainer(f);
  flt->run(2);
  flt->save_checkpoint(dir.file("float.pt"));
  auto t = make_trainer(ana_config(3, {{"init_checkpoint", dir.file("float.pt")}}));
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_TRUE(t->network()->layer(i)->weight.equal(flt->network()->layer(i)->weight));
  EXPECT_VALUE_ERROR(make_trainer(ana_config(3, {{"init_checkpoint", dir.file("none.pt")}})),
                     "config: ana.init_checkpoint");
}
