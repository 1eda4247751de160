// qsched meta-train end to end on tiny synthetic tasks.
#include <gtest/gtest.h>

#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

namespace qsched::test {
namespace {

TEST(MetaTrainCli, RunsResumesAndWritesTheControllerFiles) {
  TempDir d;
  write_file(d.file("meta.json"), tiny_meta_config().dump());
  const std::string out = d.file("run");
  auto r = run_qsched("meta-train --quiet --config " + d.file("meta.json") + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 outer steps"), std::string::npos) << r.output;
  EXPECT_EQ(count_lines(read_file(out + "/meta_metrics.jsonl")), 2);
  for (const char* f :
       {"/meta_state.pt", "/controller.pt", "/controller.json", "/meta_config.json"})
    EXPECT_FALSE(read_file(out + f).empty()) << f;
  json row = json::parse(read_file(out + "/meta_metrics.jsonl")
                             .substr(read_file(out + "/meta_metrics.jsonl").find('\n') + 1));
  EXPECT_EQ(row["step"].get<int64_t>(), 2);
  EXPECT_TRUE(row.contains("val_fitness"));
  json ctrl = json::parse(read_file(out + "/controller.json"));
  EXPECT_EQ(ctrl["algorithm"], "ana");
  EXPECT_EQ(ctrl["quantity"], "noise");
  EXPECT_EQ(ctrl["base_schedule"]["family"], "ana_window");

  r = run_qsched("meta-train --quiet --resume --out " + out + " --steps 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_lines(read_file(out + "/meta_metrics.jsonl")), 3);
  // Starting over in a used directory is refused.
  expect_one_line_error(
      run_qsched("meta-train --quiet --config " + d.file("meta.json") + " --out " + out),
      "--resume");
}

TEST(MetaTrainCli, BadInputIsAOneLineError) {
  TempDir d;
  json bad = tiny_meta_config();
  bad["estimator"]["sigma"] = -1;
  write_file(d.file("bad.json"), bad.dump());
  expect_one_line_error(
      run_qsched("meta-train --config " + d.file("bad.json") + " --out " + d.file("o")),
      "estimator.sigma");
  expect_one_line_error(run_qsched("meta-train --resume --out " + d.file("none")), "meta_config");
  expect_one_line_error(run_qsched("meta-train --config " + d.file("bad.json")), "--out");
  expect_one_line_error(run_qsched("meta-train --config " + d.file("bad.json") + " --out " +
                                   d.file("o") + " --steps 0"),
                        "--steps");
  expect_one_line_error(
      run_qsched("meta-train --config " + d.file("missing.json") + " --out " + d.file("o")),
      "missing.json");
}

}  // namespace
}  // namespace qsched::test
