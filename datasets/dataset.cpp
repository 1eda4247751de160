// Dataset::select, derive_seed, split_train_val, stratified_subset, Normalizer, Batcher.
#include "datasets/dataset.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "datasets/detail.h"

namespace fs = std::filesystem;

namespace qsched::data {

namespace detail {

void require_regular_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  TORCH_CHECK_VALUE(fs::exists(st), what, " '", path, "': missing file (no such file)");
  TORCH_CHECK_VALUE(fs::is_regular_file(st), what, " '", path, "': not a regular file");
}

uint64_t file_size_checked(const std::string& path, const std::string& what) {
  std::error_code ec;
  uint64_t size = fs::file_size(path, ec);
  TORCH_CHECK_VALUE(!ec, what, " '", path, "': cannot determine the file size: ", ec.message());
  return size;
}

void check_dataset(const Dataset& d, const char* fn) {
  TORCH_CHECK_VALUE(d.images.defined() && d.labels.defined(), fn, ": dataset '", d.name,
                    "' has no images/labels");
  TORCH_CHECK_VALUE(d.labels.dim() == 1 && d.labels.scalar_type() == torch::kLong, fn,
                    ": dataset '", d.name, "' labels must be a 1-D int64 tensor, got ",
                    d.labels.sizes(), " ", d.labels.scalar_type());
  TORCH_CHECK_VALUE(d.images.dim() >= 2 && d.images.size(0) == d.labels.size(0), fn, ": dataset '",
                    d.name, "' has images ", d.images.sizes(), " but ", d.labels.size(0),
                    " labels");
  TORCH_CHECK_VALUE(d.num_classes >= 1, fn, ": dataset '", d.name, "' has num_classes ",
                    d.num_classes, ", must be >= 1");
}

}  // namespace detail

namespace {

/// Labels must be in [0, num_classes) for the class-stratified operations.
void check_labels(const Dataset& d, const char* fn) {
  if (d.size() == 0) return;
  auto [lo, hi] = torch::aminmax(d.labels);
  int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
  TORCH_CHECK_VALUE(lo_v >= 0 && hi_v < d.num_classes, fn, ": dataset '", d.name,
                    "' has labels in [", lo_v, ", ", hi_v, "], must be in [0, ", d.num_classes,
                    ")");
}

/// The members of every class in a seeded random order, grouped by class.
struct ClassOrder {
  torch::Tensor index;          ///< [N] sample indices, class 0 first, random order within a class
  torch::Tensor cls;            ///< [N] class of index[i]
  torch::Tensor rank;           ///< [N] position of index[i] within its class
  std::vector<int64_t> counts;  ///< [K] samples per class
};

ClassOrder class_order(const torch::Tensor& labels, int64_t num_classes, at::Generator& gen) {
  const int64_t n = labels.size(0);
  auto perm = torch::randperm(n, gen, torch::kLong);
  auto permuted = labels.index_select(0, perm);
  // A stable sort by class keeps the random order inside each class.
  auto by_class = std::get<1>(torch::sort(permuted, c10::optional<bool>(true), 0, false));
  ClassOrder o;
  o.index = perm.index_select(0, by_class);
  o.cls = permuted.index_select(0, by_class);
  auto counts = torch::bincount(labels, {}, num_classes);
  auto starts = counts.cumsum(0) - counts;
  o.rank = torch::arange(n, torch::kLong) - starts.index_select(0, o.cls);
  auto counts_acc = counts.accessor<int64_t, 1>();
  o.counts.assign(counts_acc.data(), counts_acc.data() + num_classes);
  return o;
}

/// Of every class c, the first quota[c] members of the random class order.
torch::Tensor take_quota(const ClassOrder& o, const std::vector<int64_t>& quota, bool taken) {
  auto q = torch::tensor(quota, torch::kLong);
  auto mask = o.rank < q.index_select(0, o.cls);
  if (!taken) mask = mask.logical_not();
  return o.index.masked_select(mask);
}

/// Classes in a seeded random order (for fair tie-breaking).
std::vector<int64_t> random_class_order(int64_t num_classes, at::Generator& gen) {
  auto perm = torch::randperm(num_classes, gen, torch::kLong);
  auto acc = perm.accessor<int64_t, 1>();
  return std::vector<int64_t>(acc.data(), acc.data() + num_classes);
}

torch::Tensor sorted(const torch::Tensor& index) { return std::get<0>(index.sort()); }

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

Dataset Dataset::select(const torch::Tensor& index) const {
  TORCH_CHECK_VALUE(index.defined() && index.dim() == 1 &&
                        (index.scalar_type() == torch::kLong || index.scalar_type() == torch::kInt),
                    "Dataset::select: index must be a 1-D int64 tensor");
  Dataset out;
  out.images = images.index_select(0, index);
  out.labels = labels.index_select(0, index);
  out.num_classes = num_classes;
  out.name = name;
  return out;
}

uint64_t derive_seed(uint64_t seed, uint64_t salt, uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ salt) ^ index);
}

std::pair<Dataset, Dataset> split_train_val(const Dataset& train, int64_t val_size, uint64_t seed) {
  detail::check_dataset(train, "split_train_val");
  const int64_t n = train.size();
  TORCH_CHECK_VALUE(val_size >= 1 && val_size <= n - 1, "split_train_val: dataset '", train.name,
                    "' has ", n, " samples; val_size = ", val_size, " must be in [1, ", n - 1, "]");
  check_labels(train, "split_train_val");
  const int64_t k = train.num_classes;
  auto gen = detail::make_generator(derive_seed(seed, detail::kSaltSplit));
  ClassOrder o = class_order(train.labels, k, gen);

  // Proportional quotas; the remaining samples go to the largest remainders (ties: seeded).
  std::vector<int64_t> quota(k);
  std::vector<std::pair<int64_t, int64_t>> remainder;  // (remainder, class)
  int64_t assigned = 0;
  for (int64_t c : random_class_order(k, gen)) {
    const int64_t num = val_size * o.counts[c];  // <= n^2, fits for any in-memory dataset
    quota[c] = num / n;
    assigned += quota[c];
    remainder.emplace_back(num % n, c);
  }
  std::stable_sort(remainder.begin(), remainder.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  // sum(remainder) / n == val_size - assigned, each class gets at most one more and only one
  // with a non-zero remainder, so quota[c] <= counts[c].
  for (int64_t i = 0; i < val_size - assigned; ++i) ++quota[remainder[i].second];

  Dataset val = train.select(sorted(take_quota(o, quota, true)));
  Dataset rest = train.select(sorted(take_quota(o, quota, false)));
  const std::string suffix = "/train";
  const std::string& name = train.name;
  const bool is_train = name.size() >= suffix.size() &&
                        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  val.name = (is_train ? name.substr(0, name.size() - suffix.size()) : name) + "/val";
  return {std::move(rest), std::move(val)};
}

Dataset stratified_subset(const Dataset& d, int64_t n, uint64_t seed) {
  detail::check_dataset(d, "stratified_subset");
  const int64_t total = d.size();
  TORCH_CHECK_VALUE(n >= 1 && n <= total, "stratified_subset: dataset '", d.name, "' has ", total,
                    " samples; subset size ", n, " must be in [1, ", total, "]");
  if (n == total) return d;
  check_labels(d, "stratified_subset");
  const int64_t k = d.num_classes;
  auto gen = detail::make_generator(derive_seed(seed, detail::kSaltSubset));
  ClassOrder o = class_order(d.labels, k, gen);

  // Water filling: visit classes from the smallest; each gets min(count, fair share of the rest).
  std::vector<int64_t> by_size = random_class_order(k, gen);
  std::stable_sort(by_size.begin(), by_size.end(),
                   [&](int64_t a, int64_t b) { return o.counts[a] < o.counts[b]; });
  std::vector<int64_t> quota(k, 0);
  int64_t left = n;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t c = by_size[i];
    quota[c] = std::min(o.counts[c], left / (k - i));
    left -= quota[c];
  }
  // Rounding leftovers: one more to classes that still have samples, in a seeded order.
  std::vector<int64_t> order = random_class_order(k, gen);
  while (left > 0) {
    for (int64_t c : order) {
      if (left > 0 && quota[c] < o.counts[c]) {
        ++quota[c];
        --left;
      }
    }
  }
  auto index = take_quota(o, quota, true);
  index = index.index_select(0, torch::randperm(index.size(0), gen, torch::kLong));
  return d.select(index);
}

Normalizer Normalizer::fit(const Dataset& d) {
  detail::check_dataset(d, "Normalizer::fit");
  TORCH_CHECK_VALUE(d.size() >= 1, "Normalizer::fit: dataset '", d.name, "' is empty");
  TORCH_CHECK_VALUE(d.images.is_floating_point(), "Normalizer::fit: dataset '", d.name,
                    "' images must be floating point");
  std::vector<int64_t> dims{0};
  for (int64_t i = 2; i < d.images.dim(); ++i) dims.push_back(i);
  auto [s, m] = torch::std_mean(d.images, dims, /*unbiased=*/false, /*keepdim=*/false);
  Normalizer out;
  out.mean = m.to(torch::kFloat);
  out.std = s.to(torch::kFloat).clamp_min(1e-6);
  return out;
}

void Normalizer::apply(Dataset& d) const {
  TORCH_CHECK_VALUE(mean.defined() && this->std.defined(), "Normalizer::apply: not fitted");
  TORCH_CHECK_VALUE(d.images.defined() && d.images.dim() >= 2 && d.images.size(1) == mean.numel(),
                    "Normalizer::apply: dataset '", d.name, "' has images ",
                    (d.images.defined() ? d.images.sizes() : torch::IntArrayRef{}), ", expected ",
                    mean.numel(), " channels in dim 1");
  std::vector<int64_t> shape(d.images.dim(), 1);
  shape[1] = mean.numel();
  // A new tensor rather than sub_/div_: the old one may be shared (e.g. a subset of all samples).
  auto x = d.images - mean.view(shape);
  x.div_(this->std.view(shape));
  d.images = x;
}

Batcher::Batcher(const Dataset& d, int64_t batch_size, bool shuffle, uint64_t seed)
    : d_(&d), batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {
  TORCH_CHECK_VALUE(batch_size >= 1, "Batcher: batch size ", batch_size, " must be >= 1");
  if (d.size() > 0) detail::check_dataset(d, "Batcher");
}

void Batcher::start_epoch(int64_t e) {
  TORCH_CHECK_VALUE(e >= 0, "Batcher::start_epoch: epoch ", e, " must be >= 0");
  const int64_t n = d_->size();
  if (shuffle_) {
    auto gen = detail::make_generator(derive_seed(seed_, detail::kSaltBatcher, uint64_t(e)));
    order_ = torch::randperm(n, gen, torch::kLong);
  } else {
    order_ = torch::arange(n, torch::kLong);
  }
  pos_ = 0;
}

bool Batcher::next(torch::Tensor& x, torch::Tensor& y) {
  TORCH_CHECK(order_.defined(), "Batcher::next called before start_epoch");
  const int64_t n = order_.size(0);
  if (pos_ >= n) return false;
  const int64_t end = std::min(n, pos_ + batch_size_);
  auto index = order_.slice(0, pos_, end);
  x = d_->images.index_select(0, index);
  y = d_->labels.index_select(0, index);
  pos_ = end;
  return true;
}

int64_t Batcher::batches_per_epoch() const { return (d_->size() + batch_size_ - 1) / batch_size_; }

}  // namespace qsched::data
