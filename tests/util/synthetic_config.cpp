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

}  // namespace qsched::test
