// The ANA schedule family "ana_window": formula, layouts, invariants and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "schedules/ana_families.h"
#include "schedules/factory.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::sched;

namespace {

ScheduleTable table_of(const json& spec, int64_t T, int64_t L) {
  auto s = make_schedule(spec, Quantity::kNoise, "test");
  return materialize(*s, T, L, "test");
}

/// Reference bounded-window power law, quantlab's bws: ((e - clip(t, s, e)) / (e - s))^alpha.
double bws(double t, double s, double e, double alpha) {
  return std::pow((e - std::clamp(t, s, e)) / (e - s), alpha);
}

}  // namespace

TEST(AnaWindow, IsRegistered) {
  auto f = schedule_families();
  EXPECT_NE(std::find(f.begin(), f.end(), "ana_window"), f.end());
  for (const char* old : {"file", "inq_paper", "steps", "table"})
    EXPECT_NE(std::find(f.begin(), f.end(), old), f.end()) << old;
}

TEST(AnaWindow, DefaultsAreValid) {
  AnaWindowOptions o;
  EXPECT_NO_THROW(o.validate("test"));
  auto t = table_of({{"family", "ana_window"}}, 10, 3);
  EXPECT_EQ(t.quantity, Quantity::kNoise);
  EXPECT_DOUBLE_EQ(t.values[0][0], 0.5);
}

TEST(AnaWindow, SequentialMatchesTheBoundedWindowPowerLaw) {
  // T = 13 epochs, L = 3, start 0, window 4: layer l anneals on [4l, 4l + 4].
  json spec = {{"family", "ana_window"}, {"sigma0", 0.5}, {"alpha", 2.0}, {"window", 4}};
  auto t = table_of(spec, 13, 3);
  for (int64_t e = 0; e < 13; ++e)
    for (int64_t l = 0; l < 3; ++l)
      EXPECT_NEAR(t.values[e][l], 0.5 * bws(e, 4.0 * l, 4.0 * l + 4, 2.0), 1e-12) << e << " " << l;
  // Lower layers first: layer 0 is done when layer 1 starts.
  EXPECT_EQ(t.values[4][0], 0.0);
  EXPECT_EQ(t.values[4][1], 0.5);
  EXPECT_EQ(t.values[12], (std::vector<double>{0, 0, 0}));
}

TEST(AnaWindow, DefaultWindowSpansTheRun) {
  // No window: [start, T-1] split in L equal windows.
  auto t = table_of({{"family", "ana_window"}, {"shape", "linear"}}, 7, 2);
  // windows [0, 3], [3, 6]
  EXPECT_NEAR(t.values[1][0], 0.5 * (1 - 1.0 / 3), 1e-12);
  EXPECT_NEAR(t.values[3][0], 0.0, 1e-12);
  EXPECT_NEAR(t.values[4][1], 0.5 * (1 - 1.0 / 3), 1e-12);
  EXPECT_EQ(t.values[6][1], 0.0);
}

TEST(AnaWindow, LayoutsGiveTheirWindows) {
  AnaWindowOptions o;
  o.window = 2;
  o.start = 1;
  for (const char* layout : {"sequential", "same_start", "same_end", "overlapped"}) {
    o.layout = layout;
    AnaWindowSchedule s(o, "test");
    for (int64_t l = 0; l < 3; ++l) {
      auto [a, b] = s.window(l, 10, 3);
      std::string name = layout;
      if (name == "sequential") {
        EXPECT_EQ(a, 1 + 2 * l);
        EXPECT_EQ(b, 3 + 2 * l);
      } else if (name == "same_start") {
        EXPECT_EQ(a, 1);
        EXPECT_EQ(b, 3 + 2 * l);
      } else if (name == "same_end") {
        EXPECT_EQ(a, 1 + 2 * l);
        EXPECT_EQ(b, 7);
      } else {
        EXPECT_EQ(a, 1);
        EXPECT_EQ(b, 7);
      }
    }
  }
}

TEST(AnaWindow, ProgressiveExponentsDecreaseWithDepth) {
  // CVPR'22: alpha_l = alpha (L - l), overlapped windows: lower layers anneal faster.
  json spec = {{"family", "ana_window"}, {"layout", "progressive"}, {"alpha", 2.0}, {"end", 8}};
  auto s = make_schedule(spec, Quantity::kNoise, "test");
  auto* w = dynamic_cast<AnaWindowSchedule*>(s.get());
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->exponent(0, 4), 8.0);
  EXPECT_EQ(w->exponent(3, 4), 2.0);
  auto t = materialize(*s, 10, 4, "test");
  for (int64_t e = 1; e < 8; ++e) {
    for (int64_t l = 0; l < 4; ++l)
      EXPECT_NEAR(t.values[e][l], 0.5 * bws(e, 0, 8, 2.0 * (4 - l)), 1e-12);
    for (int64_t l = 1; l < 4; ++l) EXPECT_LT(t.values[e][l - 1], t.values[e][l]) << e;
  }
  EXPECT_EQ(t.values[8], (std::vector<double>(4, 0.0)));
  EXPECT_EQ(t.values[9], (std::vector<double>(4, 0.0)));
}

TEST(AnaWindow, ShapesAreOneToZeroAndMonotone) {
  for (const char* shape : {"power", "linear", "cosine", "exponential"}) {
    AnaWindowOptions o;
    o.shape = shape;
    AnaWindowSchedule s(o, "test");
    EXPECT_DOUBLE_EQ(s.shape(0.0, 0, 1), 1.0) << shape;
    EXPECT_NEAR(s.shape(1.0, 0, 1), 0.0, 1e-15) << shape;
    double prev = 1.0;
    for (int i = 1; i <= 100; ++i) {
      double v = s.shape(i / 100.0, 0, 1);
      EXPECT_LE(v, prev + 1e-15) << shape << " " << i;
      prev = v;
    }
  }
  AnaWindowOptions o;
  o.shape = "cosine";
  EXPECT_NEAR(AnaWindowSchedule(o, "t").shape(0.5, 0, 1), 0.5, 1e-12);
  o.shape = "exponential";
  o.rate = 3.0;
  EXPECT_NEAR(AnaWindowSchedule(o, "t").shape(0.5, 0, 1),
              (std::exp(-1.5) - std::exp(-3.0)) / (1 - std::exp(-3.0)), 1e-12);
}

TEST(AnaWindow, ConformanceOverLayoutsShapesAndSizes) {
  // Every combination: non-negative, non-increasing, 0 at the last epoch, deterministic.
  for (const char* layout : {"sequential", "same_start", "same_end", "overlapped", "progressive"})
    for (const char* shape : {"power", "linear", "cosine", "exponential"})
      for (int64_t T : {1, 2, 5, 17})
        for (int64_t L : {1, 3, 8}) {
          if (std::string(layout) == "progressive" && std::string(shape) != "power") continue;
          json spec = {{"family", "ana_window"}, {"layout", layout}, {"shape", shape}};
          ScheduleTable a, b;
          ASSERT_NO_THROW(a = table_of(spec, T, L)) << spec.dump() << " T=" << T << " L=" << L;
          b = table_of(spec, T, L);
          EXPECT_EQ(a.values, b.values);
          // JSON round trip of the description gives the same table.
          auto s = make_schedule(spec, Quantity::kNoise, "test");
          auto again = table_of(s->describe(), T, L);
          EXPECT_EQ(again.values, a.values) << s->describe().dump();
        }
}

TEST(AnaWindow, RejectsBadSpecs) {
  auto make = [](const json& j) {
    return make_schedule(j, Quantity::kNoise, "config: ana.schedule");
  };
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"sigma0", -0.1}}),
                     "config: ana.schedule.sigma0 = -0.1. Violated constraint: sigma0 >= 0");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"layot", "sequential"}}),
                     "unknown key 'layot' (valid keys: alpha, end, exponents, family, layout");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"layout", "diagonal"}}), "layout");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"shape", "sawtooth"}}), "shape");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"alpha", 0}}), "alpha > 0");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"shape", "linear"}, {"alpha", 2}}),
                     "alpha only applies to shape \"power\"");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"window", 2}, {"end", 5}}), "not both");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"window", 0}}), "window > 0");
  EXPECT_VALUE_ERROR(make({{"family", "ana_window"}, {"sigma0", "big"}}),
                     "sigma0 has type string, expected number");
  EXPECT_VALUE_ERROR(
      make({{"family", "ana_window"}, {"shape", "cosine"}, {"exponents", "progressive"}}),
      "progressive exponents need shape \"power\"");
  EXPECT_VALUE_ERROR(make({{"family", "ana_windw"}}),
                     "is not one of: ana_window, cosine, exponential, file");
  // A fraction schedule for an ANA run and vice versa.
  EXPECT_VALUE_ERROR(make_schedule({{"family", "ana_window"}}, Quantity::kFraction, "x"),
                     "gives noise values but this algorithm needs fraction values");
}

TEST(AnaWindow, WindowsThatDoNotReachZeroAreRejectedBeforeTraining) {
  // 3 layers x 4 epochs = ends at epoch 12, but the run has 10 epochs (0..9).
  auto s = make_schedule({{"family", "ana_window"}, {"window", 4}}, Quantity::kNoise,
                         "config: ana.schedule");
  EXPECT_VALUE_ERROR(materialize(*s, 10, 3, "config: ana.schedule"),
                     "the last window ends at epoch 12 but the run has 10 quantization epochs");
  auto e = make_schedule({{"family", "ana_window"}, {"end", 20}}, Quantity::kNoise, "x");
  EXPECT_VALUE_ERROR(materialize(*e, 10, 3, "x"), "noise reaches 0 by the last epoch");
  auto st = make_schedule({{"family", "ana_window"}, {"start", 12}}, Quantity::kNoise, "x");
  EXPECT_VALUE_ERROR(materialize(*st, 10, 3, "x"), "start = 12 is after the end");
}

TEST(AnaWindow, NoiseTablesThatIncreaseOrDoNotReachZeroAreRejected) {
  json up = {
      {"family", "table"}, {"quantity", "noise"}, {"values", {{0.2, 0.5}, {0.3, 0.2}, {0, 0}}}};
  EXPECT_VALUE_ERROR(make_schedule(up, Quantity::kNoise, "config: ana.schedule"),
                     "noise levels are non-increasing");
  json nz = {{"family", "table"}, {"quantity", "noise"}, {"values", {{0.5}, {0.1}}}};
  EXPECT_VALUE_ERROR(make_schedule(nz, Quantity::kNoise, "config: ana.schedule"),
                     "noise is 0 at the last epoch");
  json neg = {{"family", "table"}, {"quantity", "noise"}, {"values", {{-0.5}, {0}}}};
  EXPECT_VALUE_ERROR(make_schedule(neg, Quantity::kNoise, "config: ana.schedule"), "noise >= 0");
}
