// The schedule family registry: conformance over every registered family with random
// parameters (invariants, determinism, JSON round trip, replay), formulas and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "schedules/factory.h"
#include "schedules/families.h"
#include "schedules/registry.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::sched;
using qsched::test::TempDir;
using qsched::test::write_file;

namespace {

std::vector<Quantity> quantities(const FamilyEntry& e) {
  std::vector<Quantity> q;
  for (Quantity x : {Quantity::kFraction, Quantity::kNoise})
    if (applies_to(e.quantity, x)) q.push_back(x);
  return q;
}

/// A random value for `p` inside its declared range, clipped to [-T, 2T] for unbounded ranges
/// (epoch-like parameters), or its default a quarter of the time.
json sample(const ParamSpec& p, int64_t T, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (!p.def.is_null() && u(rng) < 0.25) return p.def;
  double lo = std::max(p.lo, -static_cast<double>(T)), hi = std::min(p.hi, 2.0 * T);
  if (hi < lo) hi = lo;
  switch (p.type) {
    case ParamType::kInt: {
      std::uniform_int_distribution<int64_t> d(static_cast<int64_t>(std::ceil(lo)),
                                               static_cast<int64_t>(std::floor(hi)));
      return d(rng);
    }
    case ParamType::kNumber: {
      double x = lo + (hi - lo) * u(rng);
      if (p.lo_open && x <= p.lo) x = p.lo + 1e-3;
      if (p.hi_open && x >= p.hi) x = p.hi - 1e-3;
      return x;
    }
    case ParamType::kString:
      return p.choices.empty() ? json("x")
                               : json(p.choices[std::uniform_int_distribution<size_t>(
                                     0, p.choices.size() - 1)(rng)]);
    case ParamType::kNumberList: {
      std::vector<double> v(1 + rng() % 5);
      for (auto& x : v) x = lo + (hi - lo) * u(rng);
      std::sort(v.begin(), v.end());
      v.back() = 1.0;  // portions end with 1
      return v;
    }
    default:
      return json();
  }
}

/// The invariants, checked here independently of check_table.
void expect_invariants(const ScheduleTable& t, const std::string& ctx) {
  for (int64_t e = 0; e < t.epochs(); ++e)
    for (int64_t l = 0; l < t.layers(); ++l) {
      double x = t.values[e][l];
      ASSERT_TRUE(std::isfinite(x)) << ctx;
      if (t.quantity == Quantity::kFraction) {
        EXPECT_GE(x, 0.0) << ctx;
        EXPECT_LE(x, 1.0) << ctx;
        if (e > 0) EXPECT_GE(x, t.values[e - 1][l]) << ctx << " epoch " << e;
      } else {
        EXPECT_GE(x, 0.0) << ctx;
        if (e > 0) EXPECT_LE(x, t.values[e - 1][l]) << ctx << " epoch " << e;
      }
    }
  for (double x : t.values.back()) EXPECT_EQ(x, t.quantity == Quantity::kFraction ? 1.0 : 0.0);
}

ScheduleTable table_of(const json& spec, Quantity q, int64_t T, int64_t L) {
  auto s = make_schedule(spec, q, "test");
  return materialize(*s, T, L, "test");
}

}  // namespace

TEST(Registry, HasTheFamiliesOfTheIssue) {
  auto n = registry().registered_names();
  for (const char* f : {"inq_paper", "steps", "table", "file", "ana_window", "linear", "cosine",
                        "logistic", "power", "exponential", "geometric"})
    EXPECT_NE(std::find(n.begin(), n.end(), f), n.end()) << f;
  EXPECT_TRUE(std::is_sorted(n.begin(), n.end()));
  EXPECT_EQ(n, schedule_families());
}

TEST(Registry, EveryEntryDeclaresDocumentedParametersWithValidDefaults) {
  for (const auto& name : registry().registered_names()) {
    const auto& e = registry().entry(name, "test");
    EXPECT_FALSE(e.doc.empty()) << name;
    for (const auto& p : e.params) {
      EXPECT_FALSE(p.doc.empty()) << name << "." << p.name;
      if (!p.def.is_null()) EXPECT_NO_THROW(p.check(p.def, name)) << name << "." << p.name;
    }
    if (!e.parametric || name == "steps") continue;  // required keys
    for (Quantity q : quantities(e)) {
      ScheduleTable t;
      ASSERT_NO_THROW(t = table_of({{"family", name}}, q, 12, 3)) << name;
      expect_invariants(t, name);
    }
  }
}

// OpenSpiel-style basic tests over every registered parametric family: random parameters
// within the declared ranges, random T and L. A draw may be rejected (e.g. a window that does
// not fit into T epochs) but only with a one-line ValueError; most draws must be valid.
TEST(Registry, ConformanceWithRandomParameters) {
  std::mt19937 rng(1234);
  TempDir dir;
  for (const auto& name : registry().registered_names()) {
    const auto& e = registry().entry(name, "test");
    if (!e.parametric) continue;
    for (Quantity q : quantities(e)) {
      int valid = 0, trials = 60;
      for (int trial = 0; trial < trials; ++trial) {
        int64_t T = 1 + rng() % 20, L = 1 + rng() % 5;
        json spec = {{"family", name}};
        // Each parameter is left out (its default) or drawn, at random; required ones
        // (portions) are always drawn.
        for (const auto& p : e.params)
          if (applies_to(p.applies, q) && (p.name == "portions" || rng() % 2 == 0)) {
            json v = sample(p, T, rng);
            if (!v.is_null()) spec[p.name] = v;
          }
        std::string ctx = spec.dump() + " T=" + std::to_string(T) + " L=" + std::to_string(L);
        ScheduleTable a;
        try {
          a = table_of(spec, q, T, L);
        } catch (const c10::ValueError& err) {
          std::string m = err.what_without_backtrace();
          EXPECT_EQ(m.find('\n'), std::string::npos) << m;
          continue;
        }
        ++valid;
        expect_invariants(a, ctx);
        // Determinism: a second schedule from the same spec gives the same table.
        EXPECT_EQ(table_of(spec, q, T, L).values, a.values) << ctx;
        // JSON round trip: describe() -> make_schedule -> identical table.
        auto s = make_schedule(spec, q, "test");
        json d = s->describe();
        EXPECT_EQ(table_of(json::parse(d.dump()), q, T, L).values, a.values) << d.dump();
        // Replay: the recorded table (as schedule.json) through "file" and "table".
        write_file(dir.file("s.json"), a.to_json().dump());
        EXPECT_EQ(table_of({{"family", "file"}, {"path", dir.file("s.json")}}, q, T, L).values,
                  a.values)
            << ctx;
        json tab = a.to_json();
        tab["family"] = "table";
        EXPECT_EQ(table_of(tab, q, T, L).values, a.values) << ctx;
      }
      EXPECT_GE(valid, trials / 10) << name << " " << to_string(q) << ": too few valid draws";
    }
  }
}

TEST(Registry, GeometricWithHalfReproducesTheInqPaperPortions) {
  json spec = {{"family", "geometric"}, {"ratio", 0.5}, {"initial", 0.5}, {"steps", 3}};
  auto t = table_of(spec, Quantity::kFraction, 4, 2);
  auto paper = table_of({{"family", "inq_paper"}, {"bits", 5}}, Quantity::kFraction, 4, 2);
  EXPECT_EQ(t.values, paper.values);
}

TEST(Registry, PowerWithDepthExponentMatchesAnaProgressiveExponents) {
  // depth_exponent = L - 1 gives alpha_l = alpha (L - l) (CVPR'22), as ana_window computes it.
  const int64_t T = 11, L = 3;
  auto w = table_of({{"family", "power"}, {"alpha", 1.5}, {"depth_exponent", 2}, {"sigma0", 0.5}},
                    Quantity::kNoise, T, L);
  auto a = table_of({{"family", "ana_window"}, {"alpha", 1.5}, {"layout", "progressive"}},
                    Quantity::kNoise, T, L);
  for (int64_t e = 0; e < T; ++e)
    for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(w.values[e][l], a.values[e][l], 1e-12);
}

TEST(Registry, CurvesMatchTheirFormulas) {
  const int64_t T = 11;  // window [0, 10]: r = t / 10
  auto at = [&](const json& spec, int64_t t) {
    return table_of(spec, Quantity::kFraction, T, 1).values[t][0];
  };
  EXPECT_NEAR(at({{"family", "linear"}}, 3), 0.3, 1e-12);
  EXPECT_NEAR(at({{"family", "cosine"}}, 5), 0.5, 1e-12);
  EXPECT_NEAR(at({{"family", "cosine"}}, 2), (1 - std::cos(M_PI * 0.2)) / 2, 1e-12);
  EXPECT_NEAR(at({{"family", "logistic"}, {"center", 0.5}}, 5), 0.5, 1e-12);
  auto S = [](double x) { return 1 / (1 + std::exp(-x)); };
  EXPECT_NEAR(at({{"family", "logistic"}, {"center", 0.3}, {"steepness", 4}}, 2),
              (S(4 * (0.2 - 0.3)) - S(-4 * 0.3)) / (S(4 * 0.7) - S(-4 * 0.3)), 1e-12);
  EXPECT_NEAR(at({{"family", "power"}, {"alpha", 2}}, 4), 1 - 0.6 * 0.6, 1e-12);
  EXPECT_NEAR(at({{"family", "exponential"}, {"rate", 3}}, 4),
              (1 - std::exp(-1.2)) / (1 - std::exp(-3.0)), 1e-12);
  EXPECT_NEAR(at({{"family", "linear"}, {"initial", 0.4}}, 5), 0.4 + 0.6 * 0.5, 1e-12);
  // Noise: sigma0 (1 - g).
  auto n = table_of({{"family", "linear"}, {"sigma0", 2.0}}, Quantity::kNoise, T, 1);
  EXPECT_NEAR(n.values[3][0], 2.0 * 0.7, 1e-12);
  EXPECT_EQ(n.values[10][0], 0.0);
}

TEST(Registry, LayoutsGiveTheirWindows) {
  auto make = [](const json& spec) {
    const std::string f = spec["family"].get<std::string>();
    json r = registry().resolve(f, spec, Quantity::kFraction, "t");
    return WindowedSchedule(f, r, Quantity::kFraction, "t");
  };
  // T = 13 (b = 12), L = 3, start 0.
  auto st = make({{"family", "linear"}, {"layout", "stagger"}, {"delta", 2}});
  EXPECT_EQ(st.window(0, 13, 3), (std::pair<double, double>{0, 8}));
  EXPECT_EQ(st.window(2, 13, 3), (std::pair<double, double>{4, 12}));
  auto up = make({{"family", "linear"}, {"layout", "stagger"}, {"delta", -2}});
  EXPECT_EQ(up.window(0, 13, 3), (std::pair<double, double>{4, 12}));
  EXPECT_EQ(up.window(2, 13, 3), (std::pair<double, double>{0, 8}));
  auto seq = make({{"family", "linear"}, {"layout", "sequential"}, {"start", 3}});
  EXPECT_EQ(seq.window(1, 13, 3), (std::pair<double, double>{6, 9}));
  auto ss = make({{"family", "linear"}, {"layout", "same_start"}});
  EXPECT_EQ(ss.window(0, 13, 3), (std::pair<double, double>{0, 4}));
  EXPECT_EQ(ss.window(2, 13, 3), (std::pair<double, double>{0, 12}));
  auto se = make({{"family", "linear"}, {"layout", "same_end"}, {"end", -3}});
  EXPECT_EQ(se.window(1, 13, 3), (std::pair<double, double>{10.0 / 3, 10}));
  // Staggered lower layers are frozen earlier: layer 0 ahead of layer 2 at every epoch.
  auto t = table_of({{"family", "cosine"}, {"layout", "stagger"}, {"delta", 2}},
                    Quantity::kFraction, 13, 3);
  for (int64_t e = 1; e < 12; ++e) EXPECT_GE(t.values[e][0], t.values[e][2]) << e;
  EXPECT_GT(t.values[5][0], t.values[5][2]);
}

TEST(Registry, RejectsBadSpecsWithOneLineErrors) {
  auto make = [](const json& j, Quantity q = Quantity::kFraction) {
    return make_schedule(j, q, "config: inq.schedule");
  };
  EXPECT_VALUE_ERROR(make({{"family", "cosin"}}),
                     "config: inq.schedule.family = \"cosin\" is not one of: ana_window, cosine");
  EXPECT_VALUE_ERROR(make({{"family", "power"}, {"alpah", 2}}),
                     "unknown key 'alpah' (valid keys: alpha, delta, depth_exponent, end, family");
  EXPECT_VALUE_ERROR(make({{"family", "power"}, {"alpha", 0}}),
                     "config: inq.schedule.alpha = 0. Violated constraint: 0 < alpha <= 100");
  EXPECT_VALUE_ERROR(make({{"family", "power"}, {"alpha", "2"}}),
                     "alpha has type string, expected number");
  EXPECT_VALUE_ERROR(make({{"family", "geometric"}, {"steps", 2.5}}),
                     "steps has type number, expected integer");
  EXPECT_VALUE_ERROR(make({{"family", "geometric"}, {"ratio", 1.0}}), "0 < ratio");
  EXPECT_VALUE_ERROR(make({{"family", "linear"}, {"layout", "diagonal"}}),
                     "layout = \"diagonal\" is not one of: overlapped, stagger");
  EXPECT_VALUE_ERROR(make({{"family", "linear"}, {"sigma0", 0.5}}),
                     "sigma0 applies only to noise schedules");
  EXPECT_VALUE_ERROR(make({{"family", "linear"}, {"initial", 0.5}}, Quantity::kNoise),
                     "initial applies only to fraction schedules");
  EXPECT_VALUE_ERROR(make({{"family", "inq_paper"}}, Quantity::kNoise),
                     "gives fraction values but this algorithm needs noise values");
  EXPECT_VALUE_ERROR(make({{"family", "steps"}, {"portions", {0.5, 1.5}}}),
                     "portions[1] = 1.5. Violated constraint: 0 <= every portions[i] <= 1");
  EXPECT_VALUE_ERROR(make(json::array()), "must be an object with a string \"family\"");
  // Windows that do not fit fail when the table is made (before training), naming the rule.
  auto s = make({{"family", "linear"}, {"layout", "stagger"}, {"delta", 5}});
  EXPECT_VALUE_ERROR(materialize(*s, 10, 3, "config: inq.schedule"),
                     "Violated constraint: (L - 1) |delta| <= end - start");
  auto e = make({{"family", "linear"}, {"end", 12}});
  EXPECT_VALUE_ERROR(materialize(*e, 10, 3, "x"), "every layer is done by the last epoch");
}
