#include "tests/util/synthetic_config.h"

namespace qsched::test {

json synthetic_config(int64_t epochs) {
  json j = json::parse(R"({
    "seed": 3,
    "threads": 1,
    "data": {"format": "synthetic", "val_size": 128,
             "synthetic": {"n": 768, "test_n": 256, "height": 8, "width": 8, "num_classes": 4,
                           "noise": 0.8}},
    "network": {"type": "mlp", "hidden": [32]},
    "train": {"batch_size": 32,
              "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.001},
              "lr_schedule": {"name": "cosine"}}
  })");
  j["train"]["epochs"] = epochs;
  return j;
}

json tiny_meta_config() {
  json run = synthetic_config(3);
  run["algorithm"] = "ana";
  run["ana"] = {
      {"pretrain_epochs", 1},
      {"schedule", {{"family", "ana_window"}, {"sigma0", 0.5}, {"layout", "sequential"}}}};
  return {{"seed", 2},
          {"threads", 2},
          {"steps", 2},
          {"validate_every", 2},
          {"run", run},
          {"tasks", {{"networks", {{{"type", "mlp"}, {"hidden", {16}}}}}, {"seeds", 2}}},
          {"validation", {{"networks", {{{"type", "mlp"}, {"hidden", {8, 8}}}}}}},
          {"controller", {{"hidden", 4}}},
          {"estimator", {{"pairs", 2}, {"sigma", 0.1}}}};
}

}  // namespace qsched::test

#include "inner/algorithms/registry.h"
#include "inner/runtime.h"

namespace qsched::test {

std::unique_ptr<inner::Trainer> make_trainer(const json& j) {
  inner::RunConfig cfg = inner::parse_run_config(j);
  set_threads(cfg.threads);
  return std::make_unique<inner::Trainer>(cfg, inner::load_data(cfg, torch::kCPU),
                                          inner::make_algorithm(cfg));
}

std::vector<json> strip_time(const std::vector<json>& rows) {
  std::vector<json> out;
  for (auto r : rows) {
    for (const char* k : {"seconds", "busy_seconds", "utilization"}) r.erase(k);
    out.push_back(r);
  }
  return out;
}

}  // namespace qsched::test
