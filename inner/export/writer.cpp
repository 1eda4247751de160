#include "inner/export/writer.h"

#include <cmath>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/inq/inq.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/runtime.h"

namespace qsched::inner::xport {

RunData load_run_data(const RunConfig& cfg, torch::Device device) {
  // load_data = load, split, subset, then (optionally) fit a Normalizer on the training split
  // and apply it to all three. Load without normalization and do the last step here.
  RunConfig raw_cfg = cfg;
  raw_cfg.data.normalize = false;
  RunData d;
  d.raw = load_data(raw_cfg, device);
  d.normalized = d.raw;  // Normalizer::apply replaces the images tensor: raw stays intact
  const int64_t c = d.raw.train.images.size(1);
  if (cfg.data.normalize) {
    auto n = data::Normalizer::fit(d.raw.train);
    for (auto* s : {&d.normalized.train, &d.normalized.val, &d.normalized.test}) n.apply(*s);
    auto mean = n.mean.to(torch::kCPU).contiguous(), std = n.std.to(torch::kCPU).contiguous();
    d.norm.mean.assign(mean.data_ptr<float>(), mean.data_ptr<float>() + c);
    d.norm.std.assign(std.data_ptr<float>(), std.data_ptr<float>() + c);
  } else {
    d.norm.mean.assign(c, 0.0f);
    d.norm.std.assign(c, 1.0f);
  }
  return d;
}

namespace {

std::string codebook_str(const inq::Codebook& cb) {
  return "{0, ±2^" + std::to_string(cb.n2) + " .. ±2^" + std::to_string(cb.n1) + "}";
}

std::vector<int64_t> dims_of(const torch::Tensor& t) { return t.sizes().vec(); }

Record float_record(const std::string& name, const torch::Tensor& t) {
  Record r;
  r.name = name;
  r.type = RecordType::kFloat32;
  r.bits = 32;
  r.dims = dims_of(t);
  auto c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  r.values.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return r;
}

double batchnorm_eps(torch::nn::Module& net) {
  double eps = -1;
  for (const auto& m : net.modules()) {
    double e = -1;
    if (auto* b1 = m->as<torch::nn::BatchNorm1d>()) e = b1->options.eps();
    if (auto* b2 = m->as<torch::nn::BatchNorm2d>()) e = b2->options.eps();
    if (e < 0) continue;
    TORCH_INTERNAL_ASSERT(eps < 0 || eps == e, "BatchNorm layers with different eps");
    eps = e;
  }
  return eps < 0 ? 1e-5 : eps;
}

}  // namespace

namespace {

/// Level-code records of an ANA network (format.h, type 3) and the header's "quantizers".
/// Every quantized layer must be hardened: its stored weights equal the effective (hard)
/// weights and each is float(eps · q_j) for a level q_j, up to one float rounding.
json export_ana(Trainer& t, ana::AnaAlgorithm& alg, std::map<std::string, Record>& coded) {
  NetworkImpl& net = *t.network();
  const auto& infos = net.quant_layers();
  TORCH_CHECK_VALUE(alg.started(),
                    "export: the ANA run never started quantizing (it is not "
                    "fully quantized)");
  json weights = json::array(), acts = json::array();
  std::vector<bool> quantized_act(net.activations().size(), false);
  for (const auto& u : alg.units()) {
    auto& layer = net.layer(u.layer);
    const std::string name = infos[u.layer].name + ".weight";
    auto w = layer->effective_weight().detach().to(torch::kCPU, torch::kFloat).contiguous();
    TORCH_CHECK_VALUE(torch::equal(w, layer->weight.detach().to(torch::kCPU, torch::kFloat)),
                      "export: ANA layer '", infos[u.layer].name,
                      "' is not hardened (its stored weights differ from the quantized ones): "
                      "the run is not fully quantized");
    const ana::QuantizerState& q = *u.weight;
    TORCH_CHECK_VALUE(!q.dynamic, "export: ANA layer '", infos[u.layer].name,
                      "' still has a dynamic scale: the run did not finish");
    const auto& lv = q.levels.values;
    const int64_t L = static_cast<int64_t>(lv.size());
    TORCH_CHECK_VALUE(L >= 2 && L <= 256, "export: ANA layer '", infos[u.layer].name, "' has ", L,
                      " levels; the format holds 2..256");
    Record r;
    r.name = name;
    r.type = RecordType::kLevels;
    r.bits = level_code_bits(L);
    r.n1 = static_cast<int32_t>(L);
    r.n2 = 0;
    r.dims = dims_of(w);
    // Level index of every weight: the hard quantizer's own index (nearest level, midway
    // thresholds), vectorized: count the thresholds at or below w / eps.
    auto idx = torch::zeros(w.sizes(), torch::kLong);
    for (double th : q.levels.thresholds) idx.add_(w.ge(static_cast<float>(th * q.eps)));
    auto idx_c = idx.contiguous();
    const int64_t* ip = idx_c.data_ptr<int64_t>();
    const float* p = w.data_ptr<float>();
    double max_abs_level = 0;
    for (double v : lv) max_abs_level = std::max(max_abs_level, std::fabs(v));
    const double tol = 4e-7 * q.eps * max_abs_level;  // a few float32 roundings
    r.codes.resize(w.numel());
    for (int64_t j = 0; j < w.numel(); ++j) {
      const double expect = lv[ip[j]] * q.eps;
      TORCH_CHECK_VALUE(std::fabs(p[j] - expect) <= tol,
                        "export: the run is not fully quantized: "
                        "layer '",
                        infos[u.layer].name, "' weight ", j, " = ", p[j],
                        " is not eps * level (eps = ", q.eps, ", nearest level ", lv[ip[j]], ")");
      r.codes[j] = static_cast<uint8_t>(ip[j]);
    }
    weights.push_back({{"record", name}, {"levels", lv}, {"eps", q.eps}});
    coded.emplace(name, std::move(r));
    for (size_t k = 0; k < u.act.size(); ++k) {
      const ana::QuantizerState& a = *u.act[k];
      TORCH_CHECK_VALUE(a.active && std::isfinite(a.eps) && a.eps > 0, "export: the activation ",
                        u.activations[k], " after '", u.name, "' has no valid scale");
      quantized_act.at(u.activations[k]) = true;
      acts.push_back({{"index", u.activations[k]},
                      {"levels", a.levels.values},
                      {"thresholds", a.levels.thresholds},
                      {"eps", a.eps}});
    }
  }
  for (size_t i = 0; i < net.activations().size(); ++i) {
    TORCH_CHECK_VALUE(quantized_act[i] || !net.activations()[i]->has_transform(),
                      "export: activation ", i, " has a transform that is not an ANA quantizer");
  }
  json q = {{"weights", weights}};
  if (!acts.empty()) q["activations"] = acts;
  return q;
}

}  // namespace

ExportModel export_network(Trainer& t, const Normalization& norm, const json& source) {
  const auto* inq_alg = dynamic_cast<const inq::InqAlgorithm*>(&t.algorithm());
  auto* ana_alg = dynamic_cast<ana::AnaAlgorithm*>(&t.algorithm());
  TORCH_CHECK_VALUE(inq_alg || ana_alg, "export: the run's algorithm is \"", t.algorithm().name(),
                    "\"; only INQ and ANA runs have quantized weights to export");
  NetworkImpl& net = *t.network();
  const auto& infos = net.quant_layers();
  torch::NoGradGuard no_grad;
  // Codes per quantized layer, keyed by the weight's parameter name.
  std::map<std::string, Record> coded;
  json quantizers;
  if (ana_alg) quantizers = export_ana(t, *ana_alg, coded);
  if (inq_alg) {
    for (size_t i = 0; i < net.activations().size(); ++i) {
      TORCH_CHECK_VALUE(!net.activations()[i]->has_transform(), "export: activation ", i,
                        " of an INQ network has a transform");
    }
  }
  std::vector<const inq::InqAlgorithm::Layer*> inq_of(infos.size(), nullptr);
  if (inq_alg)
    for (const auto& l : inq_alg->layers()) inq_of.at(l.index) = &l;

  int64_t float_layers = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    auto& layer = net.layer(static_cast<int64_t>(i));
    const std::string name = infos[i].name + ".weight";
    if (coded.count(name)) continue;  // ANA layer (checked above)
    auto w = layer->effective_weight().detach().to(torch::kCPU, torch::kFloat).contiguous();
    TORCH_CHECK_VALUE(torch::equal(w, layer->weight.detach().to(torch::kCPU, torch::kFloat)),
                      "export: layer '", infos[i].name,
                      "' has a weight transform that the export does not know");
    const auto* l = inq_of[i];
    if (!l) {
      ++float_layers;
      continue;
    }
    TORCH_CHECK_VALUE(l->started, "export: INQ layer '", infos[i].name,
                      "' never started quantizing (the run is not fully quantized)");
    Record r;
    r.name = name;
    r.type = RecordType::kCodes;
    r.bits = l->codebook.bits;
    r.n1 = static_cast<int32_t>(l->codebook.n1);
    r.n2 = static_cast<int32_t>(l->codebook.n2);
    TORCH_CHECK_VALUE(r.n1 - r.n2 + 1 == (int64_t{1} << (r.bits - 2)), "export: layer '",
                      infos[i].name, "': codebook n1 = ", r.n1, ", n2 = ", r.n2,
                      " does not have 2^(bits-2) exponents for bits = ", r.bits);
    r.dims = dims_of(w);
    r.codes.resize(w.numel());
    const float* p = w.data_ptr<float>();
    for (int64_t j = 0; j < w.numel(); ++j) {
      TORCH_CHECK_VALUE(encode_weight(p[j], r.n1, r.n2, r.bits, r.codes[j]),
                        "export: the run is not fully quantized: layer '", infos[i].name,
                        "' weight ", j, " = ", p[j], " is not on its codebook ",
                        codebook_str(l->codebook));
    }
    coded.emplace(name, std::move(r));
  }

  ExportModel m;
  // Records in module registration order (= forward order, inner/network.h): each module's
  // parameters, then its buffers.
  for (const auto& item : net.named_modules()) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      const std::string name = prefix + p.key();
      auto it = coded.find(name);
      m.records.push_back(it != coded.end() ? it->second : float_record(name, p.value()));
    }
    for (const auto& b : item.value()->named_buffers(/*recurse=*/false)) {
      if (b.key() == "num_batches_tracked") continue;
      m.records.push_back(float_record(prefix + b.key(), b.value()));
    }
  }
  const auto& in = t.data().test.images;
  json src = source.is_null() ? json::object() : source;
  src["algorithm"] = t.algorithm().name();
  if (inq_alg) src["inq_bits"] = inq_alg->options().bits;
  if (ana_alg) {
    src["weight_levels"] = ana_alg->options().weight_levels.name;
    src["activation_levels"] =
        ana_alg->options().activations ? ana_alg->options().activation_levels.name : "float";
  }
  src["float_layers"] = float_layers;
  m.header = {{"format", "qsched-export"},
              {"version", kFormatVersion},
              {"network", net.spec()},
              {"input", {{"channels", in.size(1)}, {"height", in.size(2)}, {"width", in.size(3)}}},
              {"num_classes", infos.back().fan_out},
              {"normalize", {{"mean", norm.mean}, {"std", norm.std}}},
              {"batchnorm_eps", batchnorm_eps(net)},
              {"source", src}};
  if (ana_alg) m.header["quantizers"] = quantizers;
  return m;
}

LoadedRun load_finished_quantized_run(const std::string& dir) {
  const std::string summary_path = dir + "/summary.json";
  TORCH_CHECK_VALUE(file_exists(dir + "/config.json"), "run '", dir,
                    "' has no config.json (is --run the directory of a qsched train run?)");
  LoadedRun r;
  r.cfg = load_run_config(dir);
  TORCH_CHECK_VALUE(r.cfg.algorithm == "inq" || r.cfg.algorithm == "ana", "run '", dir,
                    "' is not an INQ or ANA run (algorithm \"", r.cfg.algorithm,
                    "\"); only INQ and ANA runs have quantized weights to export");
  TORCH_CHECK_VALUE(file_exists(summary_path), "run '", dir,
                    "' has no summary.json: it is not finished (continue it with qsched train "
                    "--resume --out ",
                    dir, ")");
  r.summary = read_summary(summary_path);
  auto flag = [&](const char* key) {
    return r.summary.contains(key) ? r.summary[key].dump() : std::string("missing");
  };
  TORCH_CHECK_VALUE(r.summary.value("termination", "") == "completed", "run '", dir,
                    "' did not complete (summary.json: termination = ", flag("termination"), ")");
  TORCH_CHECK_VALUE(
      r.summary.value("quantized", false) == true && r.summary.value("on_grid", false) == true,
      "run '", dir, "' is not fully quantized (summary.json: quantized = ", flag("quantized"),
      ", on_grid = ", flag("on_grid"), ")");
  set_threads(r.cfg.threads);
  auto device = parse_device(r.cfg.device);
  RunData d = load_run_data(r.cfg, device);
  r.raw_test = d.raw.test;
  r.normalized_test = d.normalized.test;
  r.norm = d.norm;
  r.trainer = std::make_unique<Trainer>(r.cfg, std::move(d.normalized), make_algorithm(r.cfg));
  r.trainer->load_checkpoint(dir + "/checkpoint.pt");
  TORCH_CHECK_VALUE(r.trainer->epoch() == r.cfg.train.epochs, "run '", dir,
                    "': checkpoint.pt is at epoch ", r.trainer->epoch(), " of ", r.cfg.train.epochs,
                    " (not finished)");
  return r;
}

uint64_t write_export_file(const std::string& path, const ExportModel& m) {
  const std::string bytes = serialize(m);
  atomic_write(path, bytes);
  return bytes.size();
}

void write_inspection_json(const std::string& path, const ExportModel& m) {
  json j = to_inspection_json(m);
  json records = std::move(j["records"]);
  j.erase("records");
  std::string s = j.dump(2);  // "{\n ... \n}"
  s.erase(s.size() - 2);      // drop "\n}"
  s += ",\n  \"records\": [\n";
  for (size_t i = 0; i < records.size(); ++i) {
    // Scalars first (name, type, shape, ...), then the long arrays.
    nlohmann::ordered_json o;
    for (const char* k : {"name", "type", "shape", "numel", "bits", "n1", "n2"}) {
      if (records[i].contains(k)) o[k] = records[i][k];
    }
    for (auto it = records[i].begin(); it != records[i].end(); ++it) {
      if (!o.contains(it.key())) o[it.key()] = it.value();
    }
    s += "    " + o.dump() + (i + 1 < records.size() ? ",\n" : "\n");
  }
  s += "  ]\n}\n";
  atomic_write(path, s);
}

Agreement compare_with_torch(NetworkImpl& net, const ReferenceNet& ref, const data::Dataset& raw,
                             const data::Dataset& normalized, int64_t batch_size, double rel_tol) {
  TORCH_CHECK_VALUE(raw.size() == normalized.size(), "compare_with_torch: datasets differ in size");
  Agreement a;
  a.n = raw.size();
  const bool was_training = net.is_training();
  net.eval();
  torch::NoGradGuard no_grad;
  auto raw_images = raw.images.to(torch::kCPU, torch::kFloat).contiguous();
  auto labels = raw.labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* yp = labels.data_ptr<int64_t>();
  const int64_t d = ref.input_size();
  TORCH_CHECK_VALUE(raw_images.numel() == a.n * d, "compare_with_torch: the images are ",
                    raw_images.sizes(), ", the export expects ", d, " values per image");
  int64_t torch_correct = 0, ref_correct = 0;
  std::vector<double> sample_diff(a.n, 0.0);
  for (int64_t start = 0; start < a.n; start += batch_size) {
    const int64_t m = std::min(batch_size, a.n - start);
    auto logits = net.forward(normalized.images.slice(0, start, start + m))
                      .to(torch::kCPU, torch::kFloat)
                      .contiguous();
    RowMatrix r = ref.logits(raw_images.data_ptr<float>() + start * d, m);
    auto tp = logits.argmax(1).contiguous();
    auto rp = ReferenceNet::argmax(r);
    const float* lp = logits.data_ptr<float>();
    for (int64_t i = 0; i < m; ++i) {
      const int64_t y = yp[start + i];
      const int64_t t = tp.data_ptr<int64_t>()[i];
      a.same_predictions += t == rp[i];
      torch_correct += t == y;
      ref_correct += rp[i] == y;
      for (int64_t j = 0; j < r.cols(); ++j) {
        const double tl = lp[i * r.cols() + j];
        a.max_abs_logit = std::max(a.max_abs_logit, std::fabs(tl));
        a.max_abs_logit_diff = std::max(a.max_abs_logit_diff, std::fabs(tl - r(i, j)));
        sample_diff[start + i] = std::max(sample_diff[start + i], std::fabs(tl - r(i, j)));
      }
    }
  }
  net.train(was_training);
  for (double d : sample_diff) a.samples_outside_tol += d > rel_tol * (1.0 + a.max_abs_logit);
  a.torch_acc = a.n ? static_cast<double>(torch_correct) / a.n : 0.0;
  a.reference_acc = a.n ? static_cast<double>(ref_correct) / a.n : 0.0;
  return a;
}

}  // namespace qsched::inner::xport
