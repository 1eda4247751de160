// Strict JSON input (inner/base/json_text.h, json_reader.h) and the size limits of configs and
// networks (inner/config.h, inner/network.h): regressions of issue 17, items 2, 8 and 9.
#include <gtest/gtest.h>

#include "inner/base/json_reader.h"
#include "inner/base/json_text.h"
#include "inner/config.h"
#include "inner/network.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;

namespace {

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST(JsonText, DeepNestingIsAnErrorNotAStackOverflow) {
  EXPECT_NO_THROW(parse_json_text(nested_arrays(kMaxJsonDepth), "doc"));
  EXPECT_VALUE_ERROR(parse_json_text(nested_arrays(kMaxJsonDepth + 1), "doc"),
                     "doc: nesting deeper than 64 levels");
  // The 100,000-level network.hidden of the audit, through a file.
  test::TempDir dir;
  test::write_file(dir.file("deep.json"),
                   "{\"network\": {\"type\": \"mlp\", \"hidden\": " + nested_arrays(100000) + "}}");
  EXPECT_VALUE_ERROR(read_json_file(dir.file("deep.json")), "nesting deeper than 64 levels");
}

TEST(JsonText, DuplicateKeysNonFiniteNumbersAndSyntaxErrorsAreErrors) {
  EXPECT_VALUE_ERROR(parse_json_text(R"({"seed": 1, "seed": 2})", "cfg"),
                     "cfg: duplicate key \"seed\"");
  EXPECT_VALUE_ERROR(parse_json_text(R"({"a": {"b": 1, "b": 1}})", "cfg"), "duplicate key \"b\"");
  EXPECT_VALUE_ERROR(parse_json_text(R"({"lr": 1e999})", "cfg"), "number overflow parsing '1e999'");
  EXPECT_VALUE_ERROR(parse_json_text(R"({"lr": -1e999})", "cfg"), "number overflow");
  EXPECT_VALUE_ERROR(parse_json_text(R"({"lr": })", "cfg"), "cfg: JSON syntax error");
  // Same keys in different objects, big integers and ordinary documents are fine.
  const json j = parse_json_text(
      R"({"a": {"x": 1}, "b": {"x": 2}, "big": 18446744073709551615, "n": -9223372036854775808,
          "f": 1e308, "s": "\u00e9", "l": [1, [2, {"x": null}]]})",
      "cfg");
  EXPECT_EQ(j["b"]["x"], 2);
  EXPECT_TRUE(j["big"].is_number_unsigned());
  EXPECT_EQ(j["n"].get<int64_t>(), INT64_MIN);
  EXPECT_EQ(j, json::parse(j.dump()));
}

TEST(JsonText, FilesMustBeRegularBoundedFiles) {
  test::TempDir dir;
  EXPECT_VALUE_ERROR(read_json_file(dir.path()), "is a directory, expected a file");
  EXPECT_VALUE_ERROR(read_json_file(dir.file("missing.json")), "cannot open JSON file");
  test::write_file(dir.file("empty.json"), "");
  EXPECT_VALUE_ERROR(read_json_file(dir.file("empty.json")), "JSON syntax error");
  test::write_file(dir.file("big.json"), "[" + std::string(kMaxJsonFileBytes, ' ') + "]");
  EXPECT_VALUE_ERROR(read_json_file(dir.file("big.json")), "the limit is");
}

TEST(JsonText, SetOverridesParseStrictlyOrTakeTheString) {
  json j = json::object();
  apply_override(j, "train.epochs=3");
  apply_override(j, "name=hello world");
  EXPECT_EQ(j["train"]["epochs"], 3);
  EXPECT_EQ(j["name"], "hello world");
  EXPECT_VALUE_ERROR(apply_override(j, "train.epochs=1e999"), "--set 'train.epochs=1e999'");
  apply_override(j, "version=1.2.3");  // not a number: a string
  EXPECT_EQ(j["version"], "1.2.3");
  EXPECT_VALUE_ERROR(apply_override(j, "x={\"a\": 1, \"a\": 2}"), "duplicate key");
}

TEST(JsonReader, IntegersThatDoNotFitTheTargetTypeAreErrors) {
  const json j = parse_json_text(R"({"threads": 4294967297, "small": 7, "neg": -1})", "cfg");
  JsonReader r(j, "", "config");
  EXPECT_VALUE_ERROR(r.get<int>("threads", 1), "threads = 4294967297 is out of range");
  EXPECT_EQ(r.get<int>("small", 1), 7);
  EXPECT_VALUE_ERROR(r.get<uint32_t>("neg", 1), "neg has type integer, expected integer");
}

TEST(RunConfigLimits, HugeValuesAreRefusedWhenParsed) {
  json j = test::synthetic_config(1);
  j["threads"] = int64_t{1} << 32 | 1;
  EXPECT_VALUE_ERROR(parse_run_config(j), "threads = 4294967297 is out of range");
  j = test::synthetic_config(1);
  j["train"]["epochs"] = int64_t{1} << 40;
  EXPECT_VALUE_ERROR(parse_run_config(j), "train.epochs = 1099511627776");
  j = test::synthetic_config(1);
  j["train"]["batch_size"] = int64_t{1} << 40;
  EXPECT_VALUE_ERROR(parse_run_config(j), "batch_size <= 1048576");
  j = test::synthetic_config(1);
  j["data"]["synthetic"]["n"] = int64_t{1} << 40;
  EXPECT_VALUE_ERROR(parse_run_config(j), "data.synthetic.n");
  j = test::synthetic_config(1);
  j["data"]["synthetic"]["height"] = 4096;
  j["data"]["synthetic"]["width"] = 4096;
  EXPECT_VALUE_ERROR(parse_run_config(j), "(n + test_n) * channels * height * width");
}

TEST(NetworkLimits, HugeOrLongNetworksAreRefusedBeforeAllocation) {
  const InputShape in{1, 28, 28};
  EXPECT_VALUE_ERROR(build_network({{"type", "mlp"}, {"hidden", {1000000000}}}, in, 10),
                     "network.hidden[0] = 1000000000");
  EXPECT_VALUE_ERROR(
      build_network({{"type", "mlp"}, {"hidden", std::vector<int64_t>(20000, 4)}}, in, 10),
      "at most 256 entries");
  // Each width allowed, the layer is not: 65536 x 65536 weights (refused before allocating).
  const InputShape tiny{1, 1, 1};
  EXPECT_VALUE_ERROR(build_network({{"type", "mlp"}, {"hidden", {65536, 65536}}}, tiny, 10),
                     "the limit per layer");
  // Each layer allowed (8192 x 8192 = 2^26), the network is not (2 such layers and more).
  EXPECT_VALUE_ERROR(build_network({{"type", "mlp"}, {"hidden", {8192, 8192, 8192}}}, tiny, 10),
                     "the limit per network");
  EXPECT_VALUE_ERROR(build_network({{"type", "resnet"}, {"depth", 6 * 100000 + 2}}, {3, 8, 8}, 10),
                     "depth <= 1202");
  EXPECT_VALUE_ERROR(build_network({{"type", "mlp"}}, {1, 100000, 1}, 10), "each side <= 4096");
  // The limits leave ordinary networks alone.
  EXPECT_NO_THROW(build_network({{"type", "mlp"}, {"hidden", {256, 128}}}, in, 10));
}
