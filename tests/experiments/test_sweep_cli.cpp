// `qsched schedules list|show`, `qsched sweep` and `qsched sweep-report`: output, bad input,
// invalid grid points, determinism across job counts, resume, corrupt results.csv.
#include <gtest/gtest.h>

#include <sstream>

#include "experiments/sweep.h"
#include "inner/io.h"
#include "schedules/factory.h"
#include "schedules/registry.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;

namespace {

/// INQ on the synthetic task: 3 epochs, 1 float + 2 quantization epochs, MLP with 2 layers.
json inq_config(const json& schedule = {{"family", "linear"}}) {
  json j = test::synthetic_config(3);
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", 3}, {"pretrain_epochs", 1}, {"schedule", schedule}};
  return j;
}

std::string write_json(const test::TempDir& d, const std::string& name, const json& j) {
  test::write_file(d.file(name), j.dump(2));
  return d.file(name);
}

/// results.csv without the wall-clock column.
std::string without_seconds(const std::string& csv) {
  auto rows = cli::parse_csv(csv, "csv");
  size_t c = std::find(rows[0].begin(), rows[0].end(), "seconds") - rows[0].begin();
  std::string s;
  for (auto& r : rows) {
    r.erase(r.begin() + c);
    for (const auto& f : r) s += f + "|";
    s += "\n";
  }
  return s;
}

}  // namespace

TEST(SchedulesCli, ListShowsEveryFamilyWithItsParameters) {
  auto r = run_qsched("schedules list");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& name : sched::registry().registered_names())
    EXPECT_NE(r.output.find(name + "  ["), std::string::npos) << name;
  EXPECT_NE(r.output.find("0 < alpha <= 100"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layout in {overlapped, stagger"), std::string::npos);
}

TEST(SchedulesCli, ShowPrintsTheTableARunWouldUse) {
  test::TempDir d;
  json spec = {{"family", "power"}, {"alpha", 2}, {"layout", "stagger"}, {"delta", 1}};
  auto cfg = write_json(d, "c.json", inq_config(spec));
  auto r = run_qsched("schedules show --config " + cfg + " --layers 3 --epochs 6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto s = sched::make_schedule(spec, sched::Quantity::kFraction, "t");
  auto t = sched::materialize(*s, 6, 3, "t");
  char cell[32];
  std::snprintf(cell, sizeof cell, "%6.4f", t.values[2][1]);
  EXPECT_NE(r.output.find(cell), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 layers x 6 quantization epochs"), std::string::npos) << r.output;
  // Without flags: L and T from the config (MLP with one hidden layer: 2; 3 - 1 epochs).
  auto def = run_qsched("schedules show --config " + cfg);
  ASSERT_EQ(def.exit_code, 0) << def.output;
  EXPECT_NE(def.output.find("2 layers x 2 quantization epochs"), std::string::npos) << def.output;
  EXPECT_NE(def.output.find("fc1"), std::string::npos);
  // A heatmap through gnuplot.
  auto p = run_qsched("schedules show --config " + cfg + " --plot " + d.file("h.png"));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(test::read_file(d.file("h.png")).substr(1, 3), "PNG");
}

TEST(SchedulesCli, BadInputIsOneLineExitTwo) {
  test::TempDir d;
  json flt = test::synthetic_config(3);
  expect_one_line_error(run_qsched("schedules show --config " + write_json(d, "f.json", flt)),
                        "has no schedule");
  auto bad = write_json(d, "b.json", inq_config({{"family", "cosin"}}));
  expect_one_line_error(run_qsched("schedules show --config " + bad),
                        "inq.schedule.family = \"cosin\" is not one of: ana_window, cosine");
  auto wide = write_json(d, "w.json",
                         inq_config({{"family", "linear"}, {"layout", "stagger"}, {"delta", 4}}));
  expect_one_line_error(run_qsched("schedules show --config " + wide + " --layers 3 --epochs 5"),
                        "(L - 1) |delta| <= end - start");
  expect_one_line_error(run_qsched("schedules frobnicate"), "unknown subcommand 'frobnicate'");
  auto ok = write_json(d, "ok.json", inq_config());
  expect_one_line_error(
      test::run_shell("PATH=/nonexistent " + test::qsched_binary() + " schedules show --config " +
                      ok + " --plot " + d.file("x.png")),
      "gnuplot is not installed");
}

TEST(SweepGrid, EnumeratesGridsAndSeededRandomSearch) {
  auto g = cli::SweepGrid::from_json(
      json::parse(R"({"family": "power", "grid": {"alpha": [1, 2], "delta": [0, 1, 2]}})"), "g");
  ASSERT_EQ(g.points.size(), 6u);
  EXPECT_EQ(g.points[1], json::parse(R"({"alpha": 1, "delta": 1})"));
  EXPECT_EQ(g.schedule_spec(5), json::parse(R"({"family": "power", "alpha": 2, "delta": 2})"));
  json rnd = json::parse(
      R"({"family": "geometric", "random": {"count": 5, "seed": 3,
          "ranges": {"ratio": [0.2, 0.8], "steps": [1, 4], "layout": ["overlapped", "stagger"]}}})");
  auto a = cli::SweepGrid::from_json(rnd, "g"), b = cli::SweepGrid::from_json(rnd, "g");
  ASSERT_EQ(a.points.size(), 5u);
  EXPECT_EQ(a.points, b.points);
  for (const auto& p : a.points) {
    EXPECT_TRUE(p["steps"].is_number_integer());
    EXPECT_GE(p["ratio"].get<double>(), 0.2);
    EXPECT_LE(p["ratio"].get<double>(), 0.8);
  }
  EXPECT_VALUE_ERROR(cli::SweepGrid::from_json(json::parse(R"({"family": "power"})"), "g"),
                     "exactly one of");
  EXPECT_VALUE_ERROR(
      cli::SweepGrid::from_json(json::parse(R"({"family": "pwr", "grid": {"a": [1]}})"), "g"),
      "is not one of");
  EXPECT_VALUE_ERROR(
      cli::SweepGrid::from_json(json::parse(R"({"family": "power", "grid": {"alpha": 2}})"), "g"),
      "g.grid.alpha must be a non-empty list");
  EXPECT_VALUE_ERROR(
      cli::SweepGrid::from_json(
          json::parse(R"({"family": "power", "grid": {"a": [1]}, "seeds": 2})"), "g"),
      "unknown key 'seeds'");
}

TEST(SweepCsv, QuotesAndParsesBack) {
  std::vector<std::string> f = {"plain", "a,b", "say \"hi\"", "{\"x\":[1,2]}", ""};
  std::string line;
  for (size_t i = 0; i < f.size(); ++i) line += (i ? "," : "") + cli::csv_field(f[i]);
  auto rows = cli::parse_csv(line + "\n" + line + "\n", "t");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1], f);
  EXPECT_VALUE_ERROR(cli::parse_csv("a,\"b\n", "t.csv"), "t.csv line 1: unterminated quoted");
  EXPECT_VALUE_ERROR(cli::parse_csv("a,b", "t.csv"), "not terminated");
}

TEST(SweepCli, RunsSkipsInvalidPointsIsDeterministicAndResumes) {
  test::TempDir d;
  auto cfg = write_json(d, "c.json", inq_config());
  // delta 9 cannot stagger 2 layers in 2 epochs: invalid with "stagger", ignored otherwise.
  auto grid = write_json(
      d, "g.json", json::parse(R"({"family": "linear", "grid": {"layout": ["overlapped", "stagger"],
                      "delta": [0, 9]}, "config": {"data.synthetic.noise": 0.7}})"));
  const std::string common = "sweep --quiet --config " + cfg + " --grid " + grid + " --seeds 2";
  auto a = run_qsched(common + " --jobs 2 --out " + d.file("a"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("point 3 (delta=9 layout=stagger) seed 0: invalid, skipped"),
            std::string::npos)
      << a.output;
  auto [header, rows] = cli::load_results(d.file("a"));
  ASSERT_EQ(rows.size(), 8u);
  size_t c_status = std::find(header.begin(), header.end(), "status") - header.begin();
  size_t c_acc = std::find(header.begin(), header.end(), "test_acc") - header.begin();
  size_t c_err = std::find(header.begin(), header.end(), "error") - header.begin();
  int ok = 0;
  for (const auto& r : rows) {
    if (r[0] == "3") {
      EXPECT_EQ(r[c_status], "invalid");
      EXPECT_NE(r[c_err].find("delta"), std::string::npos) << r[c_err];
    } else {
      EXPECT_EQ(r[c_status], "ok");
      EXPECT_GT(std::stod(r[c_acc]), 0.3);  // 4 classes: better than chance
      ++ok;
    }
  }
  EXPECT_EQ(ok, 6);
  EXPECT_TRUE(file_exists(d.file("a/report.md")));
  std::string report = test::read_file(d.file("a/report.md"));
  EXPECT_NE(report.find("## Main effects"), std::string::npos);
  EXPECT_NE(report.find("point 3: "), std::string::npos);  // invalid points listed
  EXPECT_TRUE(file_exists(d.file("a/best_schedule.png")));

  // Same sweep with one job: identical results (but wall-clock seconds).
  auto b = run_qsched(common + " --jobs 1 --no-report --out " + d.file("b"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const std::string full = test::read_file(d.file("a/results.csv"));
  EXPECT_EQ(without_seconds(test::read_file(d.file("b/results.csv"))), without_seconds(full));

  // A sweep killed before its last rows were written resumes: only those runs are redone.
  std::istringstream in(full);
  std::string kept, line;
  for (int i = 0; i < 6 && std::getline(in, line); ++i) kept += line + "\n";
  test::write_file(d.file("a/results.csv"), kept);
  auto c = run_qsched(common + " --jobs 2 --out " + d.file("a"));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("5 finished, 3 to run"), std::string::npos) << c.output;
  EXPECT_EQ(test::read_file(d.file("a/results.csv")), full);

  // Another grid in the same directory is refused.
  auto other =
      write_json(d, "o.json", json::parse(R"({"family": "cosine", "grid": {"end": [-1]}})"));
  expect_one_line_error(
      run_qsched("sweep --config " + cfg + " --grid " + other + " --out " + d.file("a")),
      "holds a sweep with another grid.json");

  // A corrupt results.csv is an error and is left untouched.
  const std::string corrupt = kept + "7,linear,9,stagger,mlp\n";
  test::write_file(d.file("a/results.csv"), corrupt);
  expect_one_line_error(run_qsched(common + " --out " + d.file("a")), "results.csv line 7");
  EXPECT_EQ(test::read_file(d.file("a/results.csv")), corrupt);
  test::write_file(d.file("a/results.csv"), kept.substr(0, kept.size() - 5));
  expect_one_line_error(run_qsched(common + " --out " + d.file("a")), "not terminated");

  // sweep-report on a finished directory.
  auto rep = run_qsched("sweep-report --out " + d.file("b"));
  ASSERT_EQ(rep.exit_code, 0) << rep.output;
  EXPECT_TRUE(file_exists(d.file("b/acc_vs_delta.png")));
  expect_one_line_error(run_qsched("sweep-report --out " + d.file("nope")), "does not exist");
}

TEST(SweepCli, BadFlagsAreOneLineErrors) {
  test::TempDir d;
  auto cfg = write_json(d, "c.json", inq_config());
  auto grid =
      write_json(d, "g.json", json::parse(R"({"family": "linear", "grid": {"end": [-1]}})"));
  expect_one_line_error(run_qsched("sweep --config " + cfg + " --out " + d.file("o")),
                        "missing --grid");
  expect_one_line_error(
      run_qsched("sweep --config " + cfg + " --grid " + grid + " --seeds 0 --out " + d.file("o")),
      "1 <= seeds <= 10000");
  auto flt = write_json(d, "f.json", test::synthetic_config(2));
  expect_one_line_error(
      run_qsched("sweep --quiet --config " + flt + " --grid " + grid + " --out " + d.file("f")),
      "has no schedule; use an algorithm that has one (inq, ana)");
}
