// The export format (inner/export/format.h), the torch-free reference inference
// (inner/export/reference.h) and the LibTorch writer (inner/export/writer.h).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <random>
#include <set>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/export/format.h"
#include "inner/export/reference.h"
#include "inner/export/writer.h"
#include "inner/runtime.h"
#include "tests/datasets/data_files.h"
#include "tests/util/synthetic_config.h"
#include "tests/util/test_util.h"

using namespace qsched;
using namespace qsched::inner;
using namespace qsched::inner::xport;

namespace {

/// A tiny INQ config: 4 epochs, the frozen fraction goes 0.5, 0.75, 0.9, 1 (fully quantized at
/// the end); low noise so that even 2-bit networks learn and predict every class.
json inq_config(const json& network, int bits, int64_t c = 1, int64_t hw = 8,
                const json& exclude = json::array()) {
  json j = test::synthetic_config(4);
  j["algorithm"] = "inq";
  j["inq"] = {{"bits", bits},
              {"exclude", exclude},
              {"schedule",
               {{"family", "steps"}, {"portions", {0.5, 0.75, 0.9, 1.0}}, {"epochs_per_step", 1}}}};
  j["data"]["synthetic"]["noise"] = 0.3;
  j["network"] = network;
  j["data"]["synthetic"]["channels"] = c;
  j["data"]["synthetic"]["height"] = hw;
  j["data"]["synthetic"]["width"] = hw;
  return j;
}

/// A trained network with its raw and normalized data.
struct Trained {
  RunConfig cfg;
  RunData data;
  std::unique_ptr<Trainer> trainer;
  json summary;
};

Trained train(const json& j, int64_t epochs = -1) {
  Trained t;
  t.cfg = parse_run_config(j);
  set_threads(t.cfg.threads);
  t.data = load_run_data(t.cfg, torch::kCPU);
  t.trainer = std::make_unique<Trainer>(t.cfg, t.data.normalized, make_algorithm(t.cfg));
  const int64_t until = epochs < 0 ? t.cfg.train.epochs : epochs;
  EXPECT_EQ(t.trainer->run(until), Termination::kCompleted);
  if (until == t.cfg.train.epochs) t.summary = t.trainer->summary(Termination::kCompleted);
  return t;
}

/// Error message of `f` (which must throw ExportError); "" when it does not throw.
template <class F>
std::string export_error(F&& f) {
  try {
    f();
  } catch (const ExportError& e) {
    return e.what();
  }
  return "";
}

void expect_file_error(const std::string& path, const std::string& needle) {
  const std::string msg = export_error([&] { ReferenceNet(read_export_file(path), path); });
  EXPECT_NE(msg.find(needle), std::string::npos) << "'" << msg << "' lacks '" << needle << "'";
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

uint32_t crc_of(const std::string& s, size_t from) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                     reinterpret_cast<const Bytef*>(s.data() + from),
                                     static_cast<uInt>(s.size() - from)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Codes and packing

TEST(ExportCodes, EveryLevelOfEveryBitWidthRoundTrips) {
  for (int b = 2; b <= 8; ++b) {
    const int32_t n1 = 2, n2 = n1 + 1 - (1 << (b - 2));
    std::set<int> codes;
    for (int32_t k = n2; k <= n1; ++k) {
      for (float s : {1.0f, -1.0f}) {
        const float w = s * std::ldexp(1.0f, k);
        uint8_t c = 0xff;
        ASSERT_TRUE(encode_weight(w, n1, n2, b, c)) << b << " " << w;
        EXPECT_TRUE(valid_code(c, n1, n2, b));
        EXPECT_EQ(code_value(c, n2, b), w);
        const Level l = decode_code(c, n2, b);
        EXPECT_EQ(l.sign, s > 0 ? 1 : -1);
        EXPECT_EQ(l.exponent, k);
        EXPECT_LT(c, 1 << b);
        codes.insert(c);
      }
    }
    uint8_t z = 0xff;
    ASSERT_TRUE(encode_weight(0.0f, n1, n2, b, z));
    EXPECT_EQ(z, 0);
    codes.insert(z);
    // 2^(b-1) + 1 levels, all distinct, in b bits.
    EXPECT_EQ(static_cast<int>(codes.size()), (1 << (b - 1)) + 1) << b;
    // Off the codebook: between levels, above n1, below n2, non-finite.
    uint8_t c = 0;
    for (float w : {0.75f * std::ldexp(1.0f, n1), std::ldexp(1.0f, n1 + 1),
                    std::ldexp(1.0f, n2 - 1), NAN, INFINITY, 3.0f}) {
      EXPECT_FALSE(encode_weight(w, n1, n2, b, c)) << b << " " << w;
    }
    EXPECT_FALSE(valid_code(static_cast<uint8_t>(1u << (b - 1)), n1, n2, b)) << "-0, b = " << b;
  }
}

TEST(ExportCodes, TernaryCodesAreTwoBitsSignMagnitude) {
  // Ternary {0, ±2^n1}: 00 = 0, 01 = +2^n1, 11 = -2^n1, 10 invalid.
  uint8_t c = 0;
  ASSERT_TRUE(encode_weight(0.25f, -2, -2, 2, c));
  EXPECT_EQ(c, 0b01);
  ASSERT_TRUE(encode_weight(-0.25f, -2, -2, 2, c));
  EXPECT_EQ(c, 0b11);
  EXPECT_FALSE(valid_code(0b10, -2, -2, 2));
  EXPECT_FALSE(valid_code(0b100, -2, -2, 2));
  // 3 bits: n1 - n2 + 1 = 2 exponents, magnitude field 3 is invalid.
  EXPECT_TRUE(valid_code(0b010, 0, -1, 3));
  EXPECT_FALSE(valid_code(0b011, 0, -1, 3));
  EXPECT_FALSE(valid_code(0b111, 0, -1, 3));
}

TEST(ExportCodes, PackingIsLsbFirstAndRoundTrips) {
  // Golden: ternary codes 1, 3, 0, 1 -> 0b01'00'11'01 = 0x4d; a fifth code starts byte 2.
  EXPECT_EQ(pack_codes({1, 3, 0, 1}, 2), (std::vector<uint8_t>{0x4d}));
  EXPECT_EQ(pack_codes({1, 3, 0, 1, 3}, 2), (std::vector<uint8_t>{0x4d, 0x03}));
  // 3 bits: 5 = 101, 2 = 010 -> bits 101 010 (LSB first): 0b00'010'101 = 0x15.
  EXPECT_EQ(pack_codes({5, 2}, 3), (std::vector<uint8_t>{0x15}));
  std::mt19937 rng(7);
  for (int b = 2; b <= 8; ++b) {
    for (size_t n : {0, 1, 7, 8, 9, 1000}) {
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng() % (1u << b));
      auto packed = pack_codes(codes, b);
      EXPECT_EQ(packed.size(), (n * b + 7) / 8);
      EXPECT_EQ(unpack_codes(packed.data(), n, b), codes) << b << " " << n;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The writer and the file format

TEST(ExportWriter, RunDataIsLoadDataSplitInTwo) {
  json j = inq_config({{"type", "mlp"}, {"hidden", {8}}}, 2, 3);
  RunConfig cfg = parse_run_config(j);
  RunData d = load_run_data(cfg, torch::kCPU);
  data::Splits ref = load_data(cfg, torch::kCPU);
  EXPECT_TRUE(torch::equal(d.normalized.train.images, ref.train.images));
  EXPECT_TRUE(torch::equal(d.normalized.test.images, ref.test.images));
  EXPECT_TRUE(torch::equal(d.raw.test.labels, ref.test.labels));
  EXPECT_GE(d.raw.test.images.min().item<float>(), 0.0f);
  EXPECT_LE(d.raw.test.images.max().item<float>(), 1.0f);
  ASSERT_EQ(d.norm.mean.size(), 3u);
  auto m = d.raw.train.images.mean({0, 2, 3});
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(d.norm.mean[c], m[c].item<float>(), 1e-5);
}

TEST(ExportFormat, RoundTripGivesIdenticalCodesAndTernaryIsTwoBitsPerWeight) {
  auto t = train(inq_config({{"type", "mlp"}, {"hidden", {32}}}, 2));
  ASSERT_TRUE(t.summary["on_grid"].get<bool>());
  ExportModel m = export_network(*t.trainer, t.data.norm, {{"run", "test"}});
  test::TempDir dir;
  const std::string path = dir.file("m.qsx");
  const uint64_t size = write_export_file(path, m);
  ExportModel r = read_export_file(path);
  EXPECT_EQ(r.header, m.header);
  ASSERT_EQ(r.records.size(), m.records.size());
  uint64_t expected_size = kPreambleBytes + m.header.dump().size();
  int64_t coded = 0;
  for (size_t i = 0; i < m.records.size(); ++i) {
    const Record &a = m.records[i], &b = r.records[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(a.bits, b.bits);
    EXPECT_EQ(a.n1, b.n1);
    EXPECT_EQ(a.n2, b.n2);
    EXPECT_EQ(a.dims, b.dims);
    EXPECT_EQ(a.codes, b.codes) << a.name;
    EXPECT_EQ(a.values, b.values) << a.name;
    expected_size += 2 + a.name.size() + 4 + 8 + 4 * a.dims.size() + 8 + a.data_bytes();
    if (a.type == RecordType::kCodes) {
      // Exactly 2 bits per weight: 4 weights per byte.
      EXPECT_EQ(a.bits, 2);
      EXPECT_EQ(a.data_bytes(), (static_cast<uint64_t>(a.numel()) + 3) / 4) << a.name;
      coded += a.numel();
    }
  }
  EXPECT_EQ(size, expected_size);
  EXPECT_EQ(coded, 64 * 32 + 32 * 4);  // fc1 and out
  // The decoded codes are the network's weights, exactly.
  const auto& infos = t.trainer->network()->quant_layers();
  for (size_t l = 0; l < infos.size(); ++l) {
    const Record* rec = r.find(infos[l].name + ".weight");
    ASSERT_TRUE(rec && rec->type == RecordType::kCodes) << infos[l].name;
    auto w = t.trainer->network()->layer(l)->weight.detach().contiguous();
    for (int64_t i = 0; i < w.numel(); ++i) {
      ASSERT_EQ(code_value(rec->codes[i], rec->n2, rec->bits), w.data_ptr<float>()[i]);
    }
  }
  // The inspection JSON lists the same codes and their exponents.
  json js = to_inspection_json(r);
  ASSERT_EQ(js["records"].size(), r.records.size());
  const json& first = js["records"][0];
  EXPECT_EQ(first["name"], "fc1.weight");
  EXPECT_EQ(first["codes"].get<std::vector<int>>().size(), 64u * 32u);
  for (size_t i = 0; i < 50; ++i) {
    const int code = first["codes"][i].get<int>();
    EXPECT_EQ(code, r.records[0].codes[i]);
    if (code == 0) {
      EXPECT_TRUE(first["exponents"][i].is_null());
      EXPECT_EQ(first["signs"][i], 0);
    } else {
      EXPECT_EQ(first["exponents"][i], r.records[0].n1);  // ternary: the only exponent
    }
  }
}

TEST(ExportWriter, RefusesFloatRunsAndUnfinishedInq) {
  json f = test::synthetic_config(1);
  auto ft = train(f);
  Normalization id{{0.0f}, {1.0f}};
  EXPECT_VALUE_ERROR(export_network(*ft.trainer, id), "only INQ and ANA runs");
  // After 1 of 2 epochs only half of each INQ layer is on the grid.
  auto half = train(inq_config({{"type", "mlp"}, {"hidden", {16}}}, 3), 1);
  EXPECT_VALUE_ERROR(export_network(*half.trainer, half.data.norm), "not fully quantized");
}

// ---------------------------------------------------------------------------------------------
// Reference inference == LibTorch forward

namespace {

void expect_reference_matches_torch(const json& j, int64_t expect_float_layers = 0) {
  auto t = train(j);
  ASSERT_TRUE(t.summary["on_grid"].get<bool>()) << t.summary.dump();
  ExportModel m = parse(serialize(export_network(*t.trainer, t.data.norm)), "mem");
  ReferenceNet ref(m, "mem");
  EXPECT_GT(ref.coded_weights(), 0);
  int64_t float_layers = 0;
  for (const auto& r : m.records) {
    float_layers += r.type == RecordType::kFloat32 && r.dims.size() >= 2;
  }
  EXPECT_EQ(float_layers, expect_float_layers);
  auto a = compare_with_torch(*t.trainer->network(), ref, t.data.raw.test, t.data.normalized.test);
  EXPECT_EQ(a.n, 256);
  // Stated tolerance: identical predictions, |logit diff| <= 1e-4 · (1 + max |logit|).
  EXPECT_EQ(a.same_predictions, a.n) << j["network"].dump();
  EXPECT_LE(a.max_abs_logit_diff, 1e-4 * (1.0 + a.max_abs_logit)) << j["network"].dump();
  EXPECT_GT(a.max_abs_logit, 0.1);  // a real, non-degenerate network
  EXPECT_GT(a.torch_acc, 0.4);      // chance is 0.25: the predictions are not constant
  EXPECT_EQ(a.reference_acc, a.torch_acc);
  EXPECT_NEAR(a.torch_acc, t.summary["test_acc"].get<double>(), 1e-12);
}

}  // namespace

TEST(ExportReference, MlpTernaryMatchesTorch) {
  expect_reference_matches_torch(inq_config({{"type", "mlp"}, {"hidden", {32, 16}}}, 2));
}

TEST(ExportReference, MlpBatchnormWithFloatLastLayerMatchesTorch) {
  expect_reference_matches_torch(
      inq_config({{"type", "mlp"}, {"hidden", {32}}, {"batchnorm", true}}, 3, 1, 8, {"last"}), 1);
}

TEST(ExportReference, LenetMatchesTorch) {
  expect_reference_matches_torch(
      inq_config({{"type", "lenet"}, {"channels", {4, 8}}, {"fc", {16}}}, 5, 1, 16));
}

TEST(ExportReference, VggMatchesTorch) {
  expect_reference_matches_torch(
      inq_config({{"type", "vgg"}, {"blocks", {8, "M", 8, 16, "M"}}, {"fc", {16}}}, 4, 3, 8));
}

TEST(ExportReference, ResnetMatchesTorch) {
  expect_reference_matches_torch(
      inq_config({{"type", "resnet"}, {"depth", 8}, {"width", 4}}, 3, 3, 8));
}

TEST(ExportReference, ReadsIdxAndCifarTestSplitsLikeTheDatasetsLibrary) {
  test::TempDir dir;
  test::write_idx_dir(dir.file("idx"), /*gz=*/true, 30, 20, 5, 4);
  RawImages r = read_test_images(dir.file("idx"));
  auto s = data::load_idx_dir(dir.file("idx"));
  ASSERT_EQ(r.n, 20);
  EXPECT_EQ(r.channels, 1);
  EXPECT_EQ(r.height, 5);
  EXPECT_EQ(r.width, 4);
  auto img = s.test.images.contiguous();
  EXPECT_EQ(std::vector<float>(img.data_ptr<float>(), img.data_ptr<float>() + img.numel()),
            r.pixels);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(r.labels[i], s.test.labels[i].item<int64_t>());

  test::write_file(dir.file("cifar/test_batch.bin"), test::cifar_records({3, 1, 4}));
  RawImages c = read_test_images(dir.file("cifar"));
  auto cd = data::load_cifar10({dir.file("cifar/test_batch.bin")}).images.contiguous();
  EXPECT_EQ(c.n, 3);
  EXPECT_EQ(c.channels, 3);
  EXPECT_EQ(std::vector<float>(cd.data_ptr<float>(), cd.data_ptr<float>() + cd.numel()), c.pixels);
  EXPECT_EQ(c.labels, (std::vector<int64_t>{3, 1, 4}));

  const std::string msg = export_error([&] { read_test_images(dir.path()); });
  EXPECT_NE(msg.find("no test split found"), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
// Corrupt files: one-line ExportError naming the file

TEST(ExportFormat, CorruptFilesAreOneLineErrorsNamingTheFile) {
  auto t = train(inq_config({{"type", "mlp"}, {"hidden", {8}}}, 2));
  const ExportModel m = export_network(*t.trainer, t.data.norm);
  const std::string good = serialize(m);
  test::TempDir dir;
  auto write = [&](const std::string& name, const std::string& bytes) {
    test::write_file(dir.file(name), bytes);
    return dir.file(name);
  };
  // The good file passes.
  EXPECT_EQ(export_error([&] { ReferenceNet(read_export_file(write("good", good)), "good"); }), "");

  std::string b = good;
  b[0] = 'X';
  expect_file_error(write("magic", b), "bad magic");
  expect_file_error(write("text", "hello world, this is not a model file at all"), "bad magic");
  expect_file_error(dir.file("missing"), "cannot be opened");

  expect_file_error(write("empty", ""), "truncated");
  for (size_t cut : {size_t{5}, size_t{31}, size_t{32}, good.size() / 2, good.size() - 1}) {
    expect_file_error(write("cut" + std::to_string(cut), good.substr(0, cut)), "truncated");
  }
  expect_file_error(write("trailing", good + "xyz"), "trailing bytes");

  b = good;
  b[8] = 9;  // version 9
  expect_file_error(write("version", b), "format version 9, this qsched reads versions 1..2");

  b = good;
  b[b.size() - 1] ^= 0x10;  // a payload bit flip
  expect_file_error(write("flip", b), "CRC mismatch");

  // Structurally inconsistent but CRC-correct files.
  b = good;
  b[28] += 1;  // one more record than there is (the record count is in the preamble)
  expect_file_error(write("count", b), "inconsistent sizes");
  b = good;
  b[28] -= 1;  // one record less: bytes left over
  expect_file_error(write("count2", b), "bytes after the last");
  {
    ExportModel x = m;
    x.records[0].dims[1] += 1;  // dims disagree with the stored data
    expect_file_error(write("dims", serialize(x)), "inconsistent sizes: record 0 ('fc1.weight')");
  }
  {
    ExportModel x = m;
    x.records[0].codes[3] = 0b10;  // "-0"
    expect_file_error(write("code", serialize(x)), "invalid code 2");
  }
  {
    ExportModel x = m;
    x.records[0].n2 -= 1;  // 2 exponents at 2 bits
    expect_file_error(write("codebook", serialize(x)), "inconsistent codebook");
  }
  {
    ExportModel x = m;  // consistent record, wrong for the architecture
    Record& bias = x.records[1];
    ASSERT_EQ(bias.name, "fc1.bias");
    bias.dims = {9};
    bias.values.push_back(0.0f);
    expect_file_error(write("shape", serialize(x)),
                      "inconsistent sizes: record 'fc1.bias' has shape [9], the network in the "
                      "header needs [8]");
  }
  {
    ExportModel x = m;
    x.records.erase(x.records.begin() + 1);
    expect_file_error(write("missing_rec", serialize(x)), "record 'fc1.bias' is missing");
  }
  {
    ExportModel x = m;
    Record extra = x.records[1];
    extra.name = "fc9.bias";
    x.records.push_back(extra);
    expect_file_error(write("extra", serialize(x)), "record 'fc9.bias' is not part of the network");
  }
  {
    ExportModel x = m;
    x.header["network"]["type"] = "transformer";
    expect_file_error(write("type", serialize(x)), "network.type = \"transformer\"");
  }
  {
    ExportModel x = m;
    x.header.erase("normalize");
    expect_file_error(write("norm", serialize(x)), "bad header");
  }
  {
    // A header that is not JSON, with a correct CRC.
    std::string h = "{not json";
    std::string bytes = good.substr(0, kPreambleBytes);
    const uint32_t header_bytes = m.header.dump().size();
    std::string payload = h + good.substr(kPreambleBytes + header_bytes);
    bytes += payload;
    auto put32 = [&](size_t at, uint32_t v) {
      for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
    };
    put32(12, static_cast<uint32_t>(h.size()));
    put32(16, static_cast<uint32_t>(payload.size()));
    put32(20, 0);
    put32(24, crc_of(bytes, kPreambleBytes));
    expect_file_error(write("json", bytes), "the header is not valid JSON");
  }
}

// ---------------------------------------------------------------------------------------------
// Version 1 files (INQ, written before ANA export) stay readable

TEST(ExportFormat, VersionOneInqFilesStillReadAndPredictTheSame) {
  auto t = train(inq_config({{"type", "mlp"}, {"hidden", {16}}}, 2));
  ExportModel m = export_network(*t.trainer, t.data.norm);
  EXPECT_EQ(m.version, kFormatVersion);
  EXPECT_FALSE(m.header.contains("quantizers"));
  ExportModel v1 = m;
  v1.version = 1;
  v1.header["version"] = 1;
  const std::string bytes = serialize(v1);
  EXPECT_EQ(bytes[8], 1);
  ExportModel r = parse(bytes, "v1");
  EXPECT_EQ(r.version, 1u);
  auto a = compare_with_torch(*t.trainer->network(), ReferenceNet(r, "v1"), t.data.raw.test,
                              t.data.normalized.test);
  EXPECT_EQ(a.same_predictions, a.n);
  // Preamble and header versions must agree.
  ExportModel mixed = m;
  mixed.header["version"] = 1;
  EXPECT_NE(export_error([&] {
              parse(serialize(mixed), "mixed");
            }).find("header version 1 disagrees with the preamble version 2"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// ANA networks: level codes, scales and activation quantizers

namespace {

/// A tiny ANA run: weights and activations quantized, annealed to 0 over `epochs`.
json ana_export_config(const json& network, const std::string& levels, int64_t c = 1,
                       int64_t hw = 8, const json& exclude = json::array()) {
  json j = test::synthetic_config(4);
  j["algorithm"] = "ana";
  j["ana"] = {{"weights", {{"levels", levels}}},
              {"activations", {{"enabled", true}, {"levels", levels}}},
              {"backward", {{"floor", levels == "binary" ? 1.0 : 0.5}}},
              {"schedule", {{"family", "ana_window"}, {"sigma0", 0.5}, {"layout", "overlapped"}}},
              {"exclude", exclude}};
  j["data"]["synthetic"]["noise"] = 0.3;
  j["network"] = network;
  j["data"]["synthetic"]["channels"] = c;
  j["data"]["synthetic"]["height"] = hw;
  j["data"]["synthetic"]["width"] = hw;
  return j;
}

/// Exports a trained ANA run through the bytes and checks the reference against LibTorch.
void expect_ana_reference_matches_torch(const json& j, int expect_bits) {
  auto t = train(j);
  ASSERT_EQ(t.summary["quantized"], true) << t.summary.dump();
  ExportModel m = parse(serialize(export_network(*t.trainer, t.data.norm)), "mem");
  ASSERT_TRUE(m.header.contains("quantizers"));
  auto& alg = dynamic_cast<ana::AnaAlgorithm&>(t.trainer->algorithm());
  // One level-code record per unit, decoding to the network's weights.
  const json& wq = m.header["quantizers"]["weights"];
  ASSERT_EQ(wq.size(), alg.units().size());
  for (size_t k = 0; k < alg.units().size(); ++k) {
    const auto& u = alg.units()[k];
    const Record* r = m.find(u.name + ".weight");
    ASSERT_TRUE(r && r->type == RecordType::kLevels) << u.name;
    EXPECT_EQ(r->bits, expect_bits);
    EXPECT_EQ(r->n1, static_cast<int32_t>(u.weight->levels.values.size()));
    EXPECT_EQ(wq[k]["record"], u.name + ".weight");
    const double eps = wq[k]["eps"].get<double>();
    EXPECT_EQ(eps, u.weight->eps);
    auto w = t.trainer->network()->layer(u.layer)->weight.detach().contiguous();
    std::set<int> seen;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const double q = u.weight->levels.values[r->codes[i]];
      ASSERT_EQ(static_cast<float>(q * eps), w.data_ptr<float>()[i]) << u.name << " " << i;
      seen.insert(r->codes[i]);
    }
    EXPECT_EQ(seen.size(), u.weight->levels.values.size()) << u.name;  // every level used
  }
  // Every quantized activation is listed with its scale.
  size_t n_act = 0;
  for (const auto& u : alg.units()) n_act += u.act.size();
  EXPECT_GT(n_act, 0u);
  EXPECT_EQ(m.header["quantizers"]["activations"].size(), n_act);

  ReferenceNet ref(m, "mem");
  EXPECT_NE(ref.describe().find("activations quantized"), std::string::npos) << ref.describe();
  auto a = compare_with_torch(*t.trainer->network(), ref, t.data.raw.test, t.data.normalized.test);
  EXPECT_EQ(a.n, 256);
  EXPECT_EQ(a.same_predictions, a.n) << j["network"].dump();
  EXPECT_LE(a.max_abs_logit_diff, 1e-4 * (1.0 + a.max_abs_logit)) << j["network"].dump();
  EXPECT_GT(a.torch_acc, 0.4);  // chance is 0.25
  EXPECT_EQ(a.reference_acc, a.torch_acc);
  EXPECT_NEAR(a.torch_acc, t.summary["test_acc"].get<double>(), 1e-12);
  // Without the activation quantizers (every activation a ReLU) the reference computes another
  // network: the quantizers are really applied.
  ExportModel relu = m;
  relu.header["quantizers"].erase("activations");
  auto b = compare_with_torch(*t.trainer->network(), ReferenceNet(relu, "relu"), t.data.raw.test,
                              t.data.normalized.test);
  EXPECT_GT(b.max_abs_logit_diff, 1e-2);
}

}  // namespace

TEST(ExportAna, MlpTernaryRoundTripIsTwoBitsAndMatchesTorch) {
  json j = ana_export_config({{"type", "mlp"}, {"hidden", {32, 16}}}, "ternary");
  expect_ana_reference_matches_torch(j, 2);
  // File size: 2 bits per weight.
  auto t = train(j);
  ExportModel m = export_network(*t.trainer, t.data.norm);
  uint64_t level_bytes = 0;
  for (const auto& r : m.records)
    if (r.type == RecordType::kLevels) level_bytes += r.data_bytes();
  EXPECT_EQ(level_bytes, (64u * 32 + 3) / 4 + (32u * 16 + 3) / 4 + (16u * 4 + 3) / 4);
  // Same config and seed: the same bytes.
  auto t2 = train(j);
  EXPECT_EQ(serialize(export_network(*t2.trainer, t2.data.norm)), serialize(m));
  // The inspection JSON lists level indices.
  json js = to_inspection_json(parse(serialize(m), "mem"));
  EXPECT_EQ(js["records"][0]["type"], "levels");
  EXPECT_EQ(js["records"][0]["n_levels"], 3);
}

TEST(ExportAna, LenetBinaryIsOneBitAndMatchesTorch) {
  // Binary everywhere but the float first conv (a fully binary tiny LeNet does not learn this
  // 4-epoch synthetic task): level-coded and float layers, ReLU and binary activations mixed.
  json j = ana_export_config({{"type", "lenet"}, {"channels", {4, 8}}, {"fc", {16}}}, "binary", 1,
                             16, {"first"});
  j["ana"]["schedule"]["sigma0"] = 1.0;
  expect_ana_reference_matches_torch(j, 1);
}

TEST(ExportAna, MlpWithFloatLastLayerMatchesTorch) {
  json j = ana_export_config({{"type", "mlp"}, {"hidden", {32}}}, "ternary", 1, 8, {"last"});
  auto t = train(j);
  ExportModel m = parse(serialize(export_network(*t.trainer, t.data.norm)), "mem");
  const Record* out = m.find("out.weight");
  ASSERT_TRUE(out);
  EXPECT_EQ(out->type, RecordType::kFloat32);
  auto a = compare_with_torch(*t.trainer->network(), ReferenceNet(m, "mem"), t.data.raw.test,
                              t.data.normalized.test);
  EXPECT_EQ(a.same_predictions, a.n);
  EXPECT_LE(a.max_abs_logit_diff, 1e-4 * (1.0 + a.max_abs_logit));
}

TEST(ExportAna, UnfinishedRunsAreRefused) {
  // After 2 of 4 epochs the weights are not hardened (and the scale is still dynamic).
  auto half = train(ana_export_config({{"type", "mlp"}, {"hidden", {16}}}, "ternary"), 2);
  EXPECT_VALUE_ERROR(export_network(*half.trainer, half.data.norm), "not fully quantized");
}

TEST(ExportAna, CorruptAnaFilesAreOneLineErrorsNamingTheFile) {
  auto t = train(ana_export_config({{"type", "mlp"}, {"hidden", {8}}}, "ternary"));
  const ExportModel m = export_network(*t.trainer, t.data.norm);
  test::TempDir dir;
  auto write = [&](const std::string& name, const ExportModel& x) {
    test::write_file(dir.file(name), serialize(x));
    return dir.file(name);
  };
  EXPECT_EQ(export_error([&] { ReferenceNet(read_export_file(write("good", m)), "good"); }), "");
  ASSERT_EQ(m.records[0].name, "fc1.weight");
  ASSERT_EQ(m.records[0].type, RecordType::kLevels);
  {
    ExportModel x = m;
    x.records[0].codes[5] = 3;  // ternary has levels 0..2
    expect_file_error(write("code", x), "element 5 has invalid code 3");
  }
  {
    ExportModel x = m;
    x.records[0].n1 = 5;  // 5 levels do not fit 2 bits
    expect_file_error(write("count", x), "inconsistent level count: n1 = 5");
  }
  {
    ExportModel x = m;  // level codes in a version-1 file
    x.version = 1;
    x.header["version"] = 1;
    expect_file_error(write("v1", x), "level codes (type 3) need format version >= 2");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["weights"].erase(0);
    expect_file_error(write("noentry", x),
                      "record 'fc1.weight' holds level codes but header quantizers.weights has "
                      "no entry");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["weights"][0]["levels"] = {-1, 0, 1, 2};
    expect_file_error(write("nlev", x), "record 'fc1.weight' has 3 levels");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["weights"][0]["levels"] = {-1, 1, 0};
    expect_file_error(write("order", x), "levels must be strictly increasing");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["weights"][0]["eps"] = -0.5;
    expect_file_error(write("eps", x), "weights[0].eps = -0.5, must be > 0");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["weights"].push_back(
        {{"record", "fc9.weight"}, {"levels", {-1, 1}}, {"eps", 1.0}});
    expect_file_error(write("extra", x), "names 'fc9.weight', which is not a level-coded layer");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["activations"][0]["index"] = 4;
    expect_file_error(write("act", x), "activations index 4, but the network has 1 hidden");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["activations"][0]["thresholds"] = {0.0};
    expect_file_error(write("th", x), "thresholds needs one value fewer than levels");
  }
  {
    ExportModel x = m;
    x.header["quantizers"]["bias"] = json::array();
    expect_file_error(write("key", x), "quantizers.bias is not one of: activations, weights");
  }
}

// Regression (issue 17.1): a header announcing a huge input and IDX data announcing 65,536 such
// images made n*h*w wrap to 0; both are now refused before anything is sized from them.
TEST(ExportReference, HugeAnnouncedSizesAreRefusedBeforeAllocation) {
  test::TempDir dir;
  auto be32 = [](uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
    return s;
  };
  // 65536 x 2^24 x 2^24 = 2^64 pixels: the product wraps to 0 in 64 bits.
  test::write_file(dir.file("idx/t10k-images-idx3-ubyte"),
                   be32(0x803) + be32(65536) + be32(1u << 24) + be32(1u << 24));
  test::write_file(dir.file("idx/t10k-labels-idx1-ubyte"), be32(0x801) + be32(65536));
  const std::string msg = export_error([&] { read_test_images(dir.file("idx")); });
  EXPECT_NE(msg.find("does not match its header"), std::string::npos) << msg;

  auto t = train(inq_config({{"type", "mlp"}, {"hidden", {8}}}, 2));
  ExportModel m = parse(serialize(export_network(*t.trainer, t.data.norm)), "mem");
  m.header["input"]["height"] = int64_t{1} << 24;
  m.header["input"]["width"] = int64_t{1} << 24;
  const std::string huge = export_error([&] { ReferenceNet(m, "mem"); });
  EXPECT_NE(huge.find("out of range"), std::string::npos) << huge;
  m.header["input"]["height"] = 4096;
  m.header["input"]["width"] = 4096;
  m.header["input"]["channels"] = 4096;  // each side allowed, the product is not
  const std::string product = export_error([&] { ReferenceNet(m, "mem"); });
  EXPECT_NE(product.find("c*h*w"), std::string::npos) << product;
}
