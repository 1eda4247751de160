// `qsched export` and `qsched infer` end to end: tiny INQ and ANA runs on IDX files are exported,
// verified against LibTorch and re-scored from the export file alone; bad input (runs that are
// not fully quantized INQ/ANA runs, corrupt export files) is one line and exit code 2.
#include <gtest/gtest.h>

#include <cstdio>

#include "inner/io.h"
#include "tests/datasets/data_files.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using qsched::test::expect_one_line_error;
using qsched::test::run_qsched;

namespace {

/// A tiny run on an 8x8 IDX directory (200 train, 60 test images); algorithm "inq" (ternary),
/// "ana" (ternary weights and activations) or "float".
std::string train_run(const test::TempDir& dir, const std::string& name, const std::string& alg) {
  const std::string data = dir.file("data");
  if (!file_exists(data + "/t10k-images-idx3-ubyte.gz")) {
    test::write_idx_dir(data, /*gz=*/true, 200, 60, 8, 8);
  }
  json j = test::synthetic_config(2);
  j["data"] = {{"format", "idx"}, {"root", data}, {"val_size", 20}};
  j["network"] = {{"type", "mlp"}, {"hidden", {16}}};
  if (alg == "ana") {
    j["algorithm"] = "ana";
    j["ana"] = {{"schedule", {{"family", "ana_window"}, {"layout", "overlapped"}}}};
  }
  if (alg == "inq") {
    j["algorithm"] = "inq";
    j["inq"] = {
        {"bits", 2},
        {"schedule", {{"family", "steps"}, {"portions", {0.5, 1.0}}, {"epochs_per_step", 1}}}};
  }
  const std::string cfg = dir.file(name + ".json");
  test::write_file(cfg, j.dump(2));
  auto r = run_qsched("train --quiet --config " + cfg + " --out " + dir.file(name));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir.file(name);
}

}  // namespace

TEST(ExportCli, ExportVerifyAndInferFromTheFileAlone) {
  test::TempDir dir;
  const std::string run = train_run(dir, "inq", "inq");
  const std::string out = dir.file("model.qsx"), js = dir.file("model.json");
  auto r = run_qsched("export --run " + run + " --out " + out + " --json " + js + " --verify");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("predictions identical 100.000% (60/60)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0.2500 bytes/coded weight"), std::string::npos) << r.output;
  ASSERT_TRUE(file_exists(out));
  json j = read_json_file(js);
  EXPECT_EQ(j["format"], "qsched-export");
  ASSERT_EQ(j["records"].size(), 4u);  // fc1.{weight,bias}, out.{weight,bias}
  EXPECT_EQ(j["records"][0]["type"], "codes");
  EXPECT_EQ(j["records"][0]["codes"].size(), 16u * 64u);

  // infer reads the export file and the raw IDX test files only: same accuracy as training.
  json summary = read_json_file(run + "/summary.json");
  auto inf = run_qsched("infer --model " + out + " --data " + dir.file("data"));
  ASSERT_EQ(inf.exit_code, 0) << inf.output;
  char acc[64];
  std::snprintf(acc, sizeof acc, "60 test images: accuracy %.4f",
                summary["test_acc"].get<double>());
  EXPECT_NE(inf.output.find(acc), std::string::npos) << inf.output << " vs " << acc;
}

TEST(ExportCli, AnaExportVerifyAndInfer) {
  test::TempDir dir;
  const std::string run = train_run(dir, "ana", "ana");
  const std::string out = dir.file("ana.qsx"),
                    js = dir.file("ana_export.json");  // not the run config ana.json
  auto r = run_qsched("export --run " + run + " --out " + out + " --json " + js + " --verify");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("predictions identical 100.000% (60/60)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0.2500 bytes/coded weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 of 1 activations quantized"), std::string::npos) << r.output;
  json j = read_json_file(js);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["source"]["algorithm"], "ana");
  EXPECT_EQ(j["records"][0]["type"], "levels");
  EXPECT_EQ(j["quantizers"]["activations"][0]["levels"], json({-1.0, 0.0, 1.0}));
  json summary = read_json_file(run + "/summary.json");
  auto inf = run_qsched("infer --model " + out + " --data " + dir.file("data"));
  ASSERT_EQ(inf.exit_code, 0) << inf.output;
  char acc[64];
  std::snprintf(acc, sizeof acc, "60 test images: accuracy %.4f",
                summary["test_acc"].get<double>());
  EXPECT_NE(inf.output.find(acc), std::string::npos) << inf.output << " vs " << acc;
  // An ANA run that is not finished is refused.
  summary["termination"] = "interrupted";
  test::write_file(run + "/summary.json", summary.dump(2));
  expect_one_line_error(run_qsched("export --run " + run + " --out " + dir.file("x")),
                        "did not complete");
}

TEST(ExportCli, BadRunsAndCorruptFilesAreOneLineExitTwo) {
  test::TempDir dir;
  expect_one_line_error(run_qsched("export --out " + dir.file("x")), "missing --run DIR");
  expect_one_line_error(
      run_qsched("export --run " + dir.file("nothing") + " --out " + dir.file("x")),
      "has no config.json");
  const std::string flt = train_run(dir, "float", "float");
  expect_one_line_error(run_qsched("export --run " + flt + " --out " + dir.file("x")),
                        "is not an INQ or ANA run (algorithm \"float\")");

  const std::string inq = train_run(dir, "inq", "inq");
  json s = read_json_file(inq + "/summary.json");
  s["quantized"] = false;
  test::write_file(inq + "/summary.json", s.dump(2));
  expect_one_line_error(run_qsched("export --run " + inq + " --out " + dir.file("x")),
                        "is not fully quantized (summary.json: quantized = false");
  s["quantized"] = true;
  test::write_file(inq + "/summary.json", s.dump(2));
  auto ok = run_qsched("export --run " + inq + " --out " + dir.file("good.qsx"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;

  const std::string good = test::read_file(dir.file("good.qsx"));
  const std::string data = " --data " + dir.file("data");
  test::write_file(dir.file("magic.qsx"), "NOTAQSX!" + good.substr(8));
  expect_one_line_error(run_qsched("infer --model " + dir.file("magic.qsx") + data), "bad magic");
  test::write_file(dir.file("cut.qsx"), good.substr(0, good.size() - 7));
  expect_one_line_error(run_qsched("infer --model " + dir.file("cut.qsx") + data), "truncated");
  std::string flip = good;
  flip[flip.size() / 2] ^= 1;
  test::write_file(dir.file("flip.qsx"), flip);
  expect_one_line_error(run_qsched("infer --model " + dir.file("flip.qsx") + data), "CRC mismatch");
  std::string ver = good;
  ver[8] = 9;
  test::write_file(dir.file("ver.qsx"), ver);
  expect_one_line_error(run_qsched("infer --model " + dir.file("ver.qsx") + data),
                        "format version 9");
  expect_one_line_error(
      run_qsched("infer --model " + dir.file("good.qsx") + " --data " + dir.path()),
      "no test split found");
  expect_one_line_error(run_qsched("infer --model " + dir.file("none.qsx") + data),
                        "cannot be opened");
}

TEST(ExportCli, HelpListsExportAndInfer) {
  auto r = run_qsched("--help");
  EXPECT_NE(r.output.find("export"), std::string::npos);
  EXPECT_NE(r.output.find("infer"), std::string::npos);
  for (const char* c : {"export", "infer"}) {
    auto h = run_qsched(std::string(c) + " --help");
    EXPECT_EQ(h.exit_code, 0) << c;
    EXPECT_NE(h.output.find("usage: qsched " + std::string(c)), std::string::npos) << h.output;
  }
}
