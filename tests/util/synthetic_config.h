#pragma once
// A small, fast, learnable run config on synthetic data (8x8 images, 4 classes): the
// standard fixture of trainer and CLI tests.
#include "inner/json_reader.h"

namespace qsched::test {

json synthetic_config(int64_t epochs = 3);

}  // namespace qsched::test
