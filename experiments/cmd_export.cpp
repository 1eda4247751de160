// qsched export: a finished INQ or ANA run -> the compact export file (inner/export/format.h) and
// its JSON inspection variant; --verify runs the torch-free reference inference against LibTorch.
// qsched infer: the reference inference alone, from the export file and a test split.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/base/json_reader.h"
#include "inner/export/format.h"
#include "inner/export/reference.h"
#include "inner/export/writer.h"
#include "inner/io.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {

/// Logit tolerance of --verify: |reference - LibTorch| <= kRelTol · (1 + max |logit|). Both are
/// float32 sums of the same exact products in different orders.
constexpr double kRelTol = 1e-4;
/// Required share of identical predictions.
constexpr double kMinAgreement = 0.999;
/// Networks with ANA activation quantizers: largest share of samples whose logits may leave the
/// tolerance (a pre-activation within rounding of a threshold takes the other level; see
/// inner/export/reference.h). Without activation quantizers every sample must be within it.
constexpr double kMaxFlippedShare = 0.001;

/// Export-format errors come from torch-free code as ExportError; make them bad input
/// (c10::ValueError -> exit code 2, one line).
template <class F>
auto as_bad_input(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const inner::xport::ExportError& e) {
    TORCH_CHECK_VALUE(false, e.what());
    throw;  // unreachable
  }
}

/// True when `path` starts like a qsched export file (inner/export/format.h).
bool is_export_file(const std::string& path) {
  char magic[8] = {};
  std::ifstream in(path, std::ios::binary);
  return in.read(magic, 8) && std::memcmp(magic, inner::xport::kMagic, 8) == 0;
}

/// True when `path` is a JSON inspection file of qsched export.
bool is_inspection_json(const std::string& path) {
  json j = json::parse(std::ifstream(path), nullptr, false);
  return j.is_object() && j.value("format", json()) == "qsched-export";
}

/// An output file of qsched export may replace an earlier output of the same sort; anything
/// else only with --force, and never a file of the run directory itself.
void check_output_file(const std::string& flag, const std::string& path, const std::string& run,
                       bool force, bool (*ours)(const std::string&)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  TORCH_CHECK_VALUE(fs::is_regular_file(path, ec), flag, " ", path,
                    " exists and is not a regular file");
  if (ours(path)) return;
  const fs::path parent =
      fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  TORCH_CHECK_VALUE(!fs::equivalent(parent, run, ec), flag, " ", path,
                    " is a file of the run directory ", run,
                    " (the export would overwrite it); write the export elsewhere");
  TORCH_CHECK_VALUE(force, flag, " ", path,
                    " exists and is not a qsched export; choose another name or pass --force to "
                    "overwrite it");
}

}  // namespace

int cmd_export(const std::vector<std::string>& args) {
  std::string run, out, json_out;
  bool verify = false, force = false;
  po::options_description desc("qsched export flags");
  desc.add_options()("help,h", "show this help")("run", po::value(&run),
                                                 "directory of a finished INQ or ANA run")(
      "out", po::value(&out), "export file to write (binary, format: inner/export/format.h)")(
      "json", po::value(&json_out), "also write the JSON inspection variant to this file")(
      "verify", po::bool_switch(&verify),
      "run the torch-free reference inference on the test split and compare it with LibTorch")(
      "force", po::bool_switch(&force),
      "overwrite an existing --out / --json that is not a qsched export (never a file of the "
      "run directory)");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched export --run DIR --out FILE [--json FILE.json] [--verify]\n\n"
                   "Writes the hardened INQ or ANA network of DIR as a compact file. INQ: per\n"
                   "layer n1, n2, shape and b-bit sign+exponent codes (2 bits per weight for\n"
                   "ternary). ANA: per layer level-index codes (1 bit binary, 2 bits ternary),\n"
                   "the levels and scale eps_w, and the activation quantizers (levels,\n"
                   "thresholds, eps_a). Both: float32 biases and BatchNorm statistics, the input\n"
                   "normalization, a CRC32. The run must have finished with every weight on its\n"
                   "codebook / grid."))
    return kExitOk;
  TORCH_CHECK_VALUE(!run.empty(), "missing --run DIR");
  TORCH_CHECK_VALUE(!out.empty(), "missing --out FILE");
  check_output_file("--out", out, run, force, is_export_file);
  if (!json_out.empty()) {
    std::error_code ec;
    TORCH_CHECK_VALUE(json_out != out && !std::filesystem::equivalent(json_out, out, ec), "--json ",
                      json_out, " is the same file as --out");
    check_output_file("--json", json_out, run, force, is_inspection_json);
  }

  auto loaded = inner::xport::load_finished_quantized_run(run);
  json source = {{"run", run},
                 {"test_acc", loaded.summary.value("test_acc", 0.0)},
                 {"data", {{"format", loaded.cfg.data.format}, {"root", loaded.cfg.data.root}}}};
  auto model = inner::xport::export_network(*loaded.trainer, loaded.norm, source);
  const uint64_t bytes = inner::xport::write_export_file(out, model);
  if (!json_out.empty()) inner::xport::write_inspection_json(json_out, model);

  // Read the file back through the torch-free reader: what a consumer gets.
  auto reread = as_bad_input([&] { return inner::xport::read_export_file(out); });
  inner::xport::ReferenceNet ref =
      as_bad_input([&] { return inner::xport::ReferenceNet(reread, out); });
  const int64_t coded = ref.coded_weights(), values = coded + ref.float_values();
  int64_t code_bytes = 0;
  for (const auto& r : reread.records)
    if (r.type != inner::xport::RecordType::kFloat32) code_bytes += r.data_bytes();
  std::printf("%s: %llu bytes (all float32: %lld bytes, %.1fx larger); %s\n", out.c_str(),
              static_cast<unsigned long long>(bytes), static_cast<long long>(4 * values),
              4.0 * values / static_cast<double>(bytes), ref.describe().c_str());
  std::printf(
      "  codes: %lld bytes = %.4f bytes/coded weight (%.2f bits); whole file: %.4f bytes per "
      "stored value\n",
      static_cast<long long>(code_bytes), coded ? static_cast<double>(code_bytes) / coded : 0.0,
      coded ? 8.0 * code_bytes / coded : 0.0,
      static_cast<double>(bytes) / std::max<int64_t>(1, values));
  if (!json_out.empty()) std::printf("  inspection JSON: %s\n", json_out.c_str());
  if (!verify) return kExitOk;

  auto a = inner::xport::compare_with_torch(*loaded.trainer->network(), ref, loaded.raw_test,
                                            loaded.normalized_test,
                                            loaded.cfg.train.eval_batch_size, kRelTol);
  const double tol = kRelTol * (1.0 + a.max_abs_logit);
  std::printf(
      "  verify on %lld test images: predictions identical %.3f%% (%lld/%lld), max |logit diff| "
      "%.3g (tolerance %.3g); accuracy reference %.4f, LibTorch %.4f\n",
      static_cast<long long>(a.n), 100.0 * a.agreement(),
      static_cast<long long>(a.same_predictions), static_cast<long long>(a.n), a.max_abs_logit_diff,
      tol, a.reference_acc, a.torch_acc);
  const bool act_q = ref.quantized_activations() > 0;
  if (act_q) {
    std::printf(
        "  samples with logits outside the tolerance (an activation level flipped at a "
        "threshold): %lld\n",
        static_cast<long long>(a.samples_outside_tol));
  }
  const bool logits_ok =
      act_q ? a.samples_outside_tol <= kMaxFlippedShare * a.n : a.max_abs_logit_diff <= tol;
  if (a.agreement() < kMinAgreement || !logits_ok) {
    std::fprintf(stderr,
                 "qsched export: error: verification failed (agreement below %.1f%% or "
                 "logits outside the tolerance)\n",
                 100.0 * kMinAgreement);
    return kExitInternal;
  }
  return kExitOk;
}

int cmd_infer(const std::vector<std::string>& args) {
  std::string model_path, data_dir;
  int64_t limit = 0;
  po::options_description desc("qsched infer flags");
  desc.add_options()("help,h", "show this help")("model", po::value(&model_path),
                                                 "export file written by qsched export")(
      "data", po::value(&data_dir),
      "data directory with the test split (IDX t10k-* files, or CIFAR-10 test_batch.bin)")(
      "limit", po::value(&limit), "only the first N test images (0 = all)");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched infer --model FILE --data DIR [--limit N]\n\n"
                   "Test accuracy of an exported network with the Eigen reference inference: it\n"
                   "reads only the export file and the raw test images (no LibTorch, no run\n"
                   "directory, no training code)."))
    return kExitOk;
  TORCH_CHECK_VALUE(!model_path.empty(), "missing --model FILE");
  TORCH_CHECK_VALUE(!data_dir.empty(), "missing --data DIR");
  TORCH_CHECK_VALUE(limit >= 0, "--limit = ", limit, ". Violated constraint: limit >= 0");
  return as_bad_input([&] {
    using namespace inner::xport;
    const ExportModel m = read_export_file(model_path);
    const ReferenceNet net(m, model_path);
    RawImages d = read_test_images(data_dir);
    if (d.channels != net.channels() || d.height != net.height() || d.width != net.width()) {
      throw ExportError("test data '" + d.source + "' has images " + std::to_string(d.channels) +
                        "x" + std::to_string(d.height) + "x" + std::to_string(d.width) +
                        ", the exported network expects " + std::to_string(net.channels()) + "x" +
                        std::to_string(net.height()) + "x" + std::to_string(net.width()));
    }
    const int64_t n = limit > 0 ? std::min(limit, d.n) : d.n;
    const auto pred = ReferenceNet::argmax(net.logits(d.pixels.data(), n));
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (d.labels[i] >= net.num_classes()) {
        throw ExportError("test data '" + d.source + "': label " + std::to_string(d.labels[i]) +
                          " >= num_classes " + std::to_string(net.num_classes()));
      }
      correct += pred[i] == d.labels[i];
    }
    std::printf("%s: %s\n", model_path.c_str(), net.describe().c_str());
    std::printf("%s: %lld test images: accuracy %.4f (%lld correct)\n", d.source.c_str(),
                static_cast<long long>(n), n ? static_cast<double>(correct) / n : 0.0,
                static_cast<long long>(correct));
    return kExitOk;
  });
}

}  // namespace qsched::cli
