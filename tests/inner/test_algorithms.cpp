// The algorithm registry and the shared scheduled-algorithm skeleton: what every algorithm
// declares, resolved sections in config.json, and adding an algorithm with one line.
#include <gtest/gtest.h>

#include "inner/algorithms/registry.h"
#include "inner/algorithms/scheduled.h"
#include "inner/ana/ana.h"
#include "inner/inq/inq.h"
#include "inner/run.h"
#include "schedules/factory.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;

namespace {

// A scheduled algorithm that quantizes nothing: it records the fractions its schedule gives
// and what the skeleton hands it. Everything an algorithm needs to declare, in ~40 lines.
struct RecordingOptions {
  ScheduledOptions common;
  static RecordingOptions from_json(const json& section) {
    RecordingOptions o;
    JsonReader r(section, "recording");
    o.common.section = "recording";
    o.common.quantity = sched::Quantity::kFraction;
    o.common.schedule =
        r.raw("schedule").is_null() ? json{{"family", "linear"}} : r.raw("schedule");
    o.common.pretrain_epochs = r.get<int64_t>("pretrain_epochs", 0);
    r.finish();
    return o;
  }
  json to_json() const {
    return {{"schedule", common.schedule}, {"pretrain_epochs", common.pretrain_epochs}};
  }
};

class RecordingAlgorithm : public ScheduledAlgorithm {
 public:
  RecordingAlgorithm(const RunConfig& cfg, std::unique_ptr<sched::Schedule> s)
      : ScheduledAlgorithm(std::move(s)), opt_(RecordingOptions::from_json(cfg.section())) {}
  std::string name() const override { return "recording"; }
  std::vector<int64_t> units;
  std::vector<std::pair<int64_t, std::vector<double>>> applied;
  int starts = 0;

 protected:
  const ScheduledOptions& scheduled_options() const override { return opt_.common; }
  void setup_units(Trainer&, const std::vector<int64_t>& layers) override { units = layers; }
  bool started() const override { return starts > 0; }
  void start(Trainer&) override { ++starts; }
  json observe_unit(Trainer&, size_t j) override { return {{"unit", j}}; }
  void apply_values(Trainer&, int64_t epoch, const std::vector<double>& v) override {
    applied.emplace_back(epoch, v);
  }
  void save_state(torch::serialize::OutputArchive&) const override {}
  void load_state(torch::serialize::InputArchive&) override {}

 private:
  RecordingOptions opt_;
};

AlgorithmSpec recording_spec() {
  AlgorithmSpec s;
  s.name = "recording";
  s.doc = "test: records its schedule";
  s.quantity = sched::Quantity::kFraction;
  s.resolve = [](const json& sec) { return RecordingOptions::from_json(sec).to_json(); };
  s.create = [](const RunConfig& c, std::unique_ptr<sched::Schedule> s) {
    return std::make_unique<RecordingAlgorithm>(c, std::move(s));
  };
  s.schedule_of = [](const json& r) { return RecordingOptions::from_json(r).common.schedule; };
  s.quantizes = [](const json&) { return std::string("nothing"); };
  return s;
}

void register_recording_once() {
  static bool done = [] {
    register_algorithm(recording_spec());  // the one registration line
    return true;
  }();
  (void)done;
}

}  // namespace

TEST(AlgorithmRegistry, BuiltinsComeFirstAndDeclareWhatTheyAre) {
  auto names = algorithm_names();
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 3),
            (std::vector<std::string>{"float", "inq", "ana"}));
  EXPECT_FALSE(algorithm_spec("float").quantity.has_value());
  EXPECT_FALSE(algorithm_spec("float").has_section);
  EXPECT_EQ(*algorithm_spec("inq").quantity, sched::Quantity::kFraction);
  EXPECT_EQ(*algorithm_spec("ana").quantity, sched::Quantity::kNoise);
  EXPECT_FALSE(algorithm_spec("inq").differentiable);
  EXPECT_TRUE(algorithm_spec("ana").differentiable);
  EXPECT_EQ(algorithm_spec("inq").quantizes(algorithm_spec("inq").resolve({{"bits", 2}})),
            "2-bit pow2 weights");
  EXPECT_EQ(algorithm_spec("ana").quantizes(algorithm_spec("ana").resolve(json::object())),
            "ternary weights, ternary activations");
  EXPECT_VALUE_ERROR(algorithm_spec("inqq"), "algorithm = \"inqq\" is not one of: float, inq, ana");
  EXPECT_VALUE_ERROR(scheduled_algorithm("float", "config: algorithm"),
                     "config: algorithm = \"float\" has no schedule; use an algorithm that has one "
                     "(inq, ana");
  EXPECT_THROW(register_algorithm(algorithm_spec("inq")), std::logic_error);  // twice
}

TEST(AlgorithmRegistry, EverySectionIsResolvedIntoTheConfig) {
  // INQ and ANA sections come back complete, and resolving is idempotent.
  for (const std::string alg : {"inq", "ana"}) {
    json j = test::synthetic_config(2);
    j["algorithm"] = alg;
    j[alg] = {{"pretrain_epochs", 1}};
    RunConfig c = parse_run_config(j);
    json sec = c.to_json().at(alg);
    EXPECT_TRUE(sec.contains("schedule")) << alg;
    EXPECT_TRUE(sec.contains("exclude")) << alg;
    EXPECT_EQ(parse_run_config(c.to_json()).to_json(), c.to_json()) << alg;
  }
  // ANA's resolved form reads back to the same quantizer for every kind of levels and scale.
  const std::vector<json> sections = {
      json::object(),
      {{"weights", {{"levels", "binary"}}}, {"activations", {{"enabled", false}}}},
      {{"weights", {{"levels", {{"bits", 4}}}, {"scale", "max_abs"}}},
       {"activations", {{"levels", {{"bits", 2}, {"signed", false}}}, {"scale", 0.25}}}},
      {{"weights", {{"levels", {{"bits", 3}, {"balanced", true}}}, {"scale", 0.1}}},
       {"noise", "normal"},
       {"parametrization", "std"},
       {"backward", {{"noise", "logistic"}, {"floor", 0.2}}}},
      {{"weights", {{"levels", {-1.5, 0.0, 2.0}}, {"scale_update", "fixed"}}},
       {"exclude", {"first"}}}};
  for (const auto& s : sections) {
    auto raw = ana::AnaOptions::from_json(s);
    json resolved = algorithm_spec("ana").resolve(s);
    auto again = ana::AnaOptions::from_json(resolved);
    EXPECT_EQ(again.to_json(), raw.to_json()) << s.dump();
    EXPECT_EQ(again.to_config(), resolved) << s.dump();
  }
  // Float has no section: one is an error naming it.
  json f = test::synthetic_config(2);
  f["float"] = json::object();
  EXPECT_VALUE_ERROR(parse_run_config(f), "algorithm \"float\" has no section");
}

TEST(AlgorithmRegistry, AnAlgorithmAddedWithOneLineRunsThroughTheSkeleton) {
  register_recording_once();
  json j = test::synthetic_config(4);
  j["algorithm"] = "recording";
  j["recording"] = {{"pretrain_epochs", 1}};
  RunConfig c = parse_run_config(j);
  EXPECT_EQ(c.to_json()["recording"]["schedule"], json({{"family", "linear"}}));
  // A section of another algorithm is still refused, and the new one's keys are strict.
  json other = j;
  other["inq"] = json::object();
  EXPECT_VALUE_ERROR(parse_run_config(other), "section 'inq' is given but algorithm is");
  json typo = j;
  typo["recording"]["pretrain"] = 1;
  EXPECT_VALUE_ERROR(parse_run_config(typo), "recording.pretrain");

  auto t = test::make_trainer(j);
  auto& alg = dynamic_cast<RecordingAlgorithm&>(t->algorithm());
  EXPECT_EQ(alg.units, (std::vector<int64_t>{0, 1}));  // both layers of the MLP, forward order
  ASSERT_NE(t->algorithm().schedule_driver(), nullptr);
  EXPECT_EQ(t->run(4), Termination::kCompleted);
  EXPECT_EQ(alg.starts, 1);
  ASSERT_EQ(alg.applied.size(), 3u);  // epochs 1..3 (epoch 0 is pre-training)
  EXPECT_EQ(alg.applied.front().first, 1);
  EXPECT_DOUBLE_EQ(alg.applied.back().second.at(0), 1.0);  // linear ends at 1
  // The record is what the skeleton writes as schedule.json.
  EXPECT_EQ(t->algorithm().schedule_driver()->table().epochs(), 3);
  // Float training has no driver; a schedule object for it is refused.
  json fl = test::synthetic_config(1);
  EXPECT_EQ(test::make_trainer(fl)->algorithm().schedule_driver(), nullptr);
  EXPECT_VALUE_ERROR(
      make_algorithm(parse_run_config(fl),
                     sched::make_schedule({{"family", "linear"}}, sched::Quantity::kFraction, "s")),
      "takes no schedule");
  // Exclusions and the pre-training rule are the skeleton's, with the section's name.
  json ex = j;
  ex["recording"]["pretrain_epochs"] = 4;
  EXPECT_VALUE_ERROR(test::make_trainer(ex), "config: recording.pretrain_epochs = 4");
}
