// Synthetic, learnable data: one random prototype image per class plus Gaussian noise.
#include <cmath>

#include "datasets/dataset.h"
#include "datasets/detail.h"

namespace qsched::data {

Dataset make_synthetic(const SyntheticOptions& opt) {
  auto check_range = [](int64_t v, const char* key, int64_t hi) {
    TORCH_CHECK_VALUE(v >= 1 && v <= hi, "synthetic data: ", key, " = ", v, " must be in [1, ", hi,
                      "]");
  };
  check_range(opt.n, "n", int64_t(1) << 31);
  check_range(opt.channels, "channels", 4096);
  check_range(opt.height, "height", 4096);
  check_range(opt.width, "width", 4096);
  check_range(opt.num_classes, "num_classes", 1 << 20);
  TORCH_CHECK_VALUE(std::isfinite(opt.noise) && opt.noise >= 0,
                    "synthetic data: noise = ", opt.noise, " must be finite and >= 0");
  const int64_t per_image = opt.channels * opt.height * opt.width;
  constexpr int64_t kMaxElements = int64_t(1) << 31;  // 8 GiB of float32
  TORCH_CHECK_VALUE(per_image <= kMaxElements / opt.n, "synthetic data: n x channels x height x ",
                    "width = ", opt.n, "x", opt.channels, "x", opt.height, "x", opt.width,
                    " exceeds the limit of 2^31 values");

  auto gen = detail::make_generator(derive_seed(opt.seed, detail::kSaltSynthetic));
  auto prototypes = torch::rand({opt.num_classes, opt.channels, opt.height, opt.width}, gen);
  auto labels = torch::randint(0, opt.num_classes, {opt.n}, gen, torch::kLong);
  auto images = prototypes.index_select(0, labels);
  if (opt.noise > 0) {
    images.add_(torch::randn({opt.n, opt.channels, opt.height, opt.width}, gen), opt.noise);
  }
  images.clamp_(0.0, 1.0);

  Dataset d;
  d.images = images;
  d.labels = labels;
  d.num_classes = opt.num_classes;
  d.name = "synthetic";
  return d;
}

}  // namespace qsched::data
