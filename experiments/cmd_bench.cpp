#include <chrono>
#include <cstdio>
#include <ctime>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "inner/algorithms/registry.h"
#include "inner/io.h"
#include "inner/network.h"
#include "inner/runtime.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {
using Clock = std::chrono::steady_clock;

/// Runs `fn` repeatedly for about `seconds` after `warmup` calls; returns seconds per call
/// (the best of 3 blocks, which is robust against a shared machine's noise).
template <class Fn>
double time_per_call(Fn fn, double seconds, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn();
  double best = 1e30;
  for (int block = 0; block < 3; ++block) {
    int64_t n = 0;
    auto t0 = Clock::now();
    double el = 0;
    do {
      fn();
      ++n;
      el = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (el < seconds / 3);
    best = std::min(best, el / static_cast<double>(n));
  }
  return best;
}

/// As time_per_call, but in CPU seconds of this process (std::clock): on a machine shared with
/// other jobs, time slices lost to them do not count, so a ratio of two such times measures the
/// work done (run with one thread).
template <class Fn>
double cpu_time_per_call(Fn fn, double seconds, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn();
  double best = 1e30;
  for (int block = 0; block < 3; ++block) {
    int64_t n = 0;
    const std::clock_t c0 = std::clock();
    double el = 0;
    do {
      fn();
      ++n;
      el = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    } while (el < seconds / 3);
    best = std::min(best, el / static_cast<double>(n));
  }
  return best;
}

/// FLOPs of one SGD training step: forward, weight gradient, and input gradient for every
/// layer but the first (whose input needs no gradient). Bias, activations, pooling, BN and
/// the optimizer update are not counted (they are memory-bound, not FLOPs).
double train_step_flops(const inner::NetworkImpl& net, int64_t batch) {
  double f = 0;
  for (const auto& l : net.quant_layers()) {
    double fwd =
        2.0 * batch * static_cast<double>(l.numel) * static_cast<double>(l.out_h * l.out_w);
    f += fwd * (l.index == 0 ? 2.0 : 3.0);
  }
  return f;
}

struct NetBench {
  std::string name;
  json spec;
  inner::InputShape input;
  double target;  ///< fraction of GEMM peak the issue asks for
};

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  int threads = 1;
  int64_t batch = 128;
  double seconds = 3.0;
  std::string out;
  po::options_description desc("qsched bench flags");
  desc.add_options()("help,h", "show this help")(
      "threads", ranged(&threads, "threads", 1, 256)->default_value(threads),
      "torch + OpenBLAS threads")("batch",
                                  ranged<int64_t>(&batch, "batch", 1, 65536)->default_value(batch),
                                  "training batch size")(
      "seconds", ranged(&seconds, "seconds", 0.01, 3600.0)->default_value(seconds),
      "time budget per measurement")("json", po::value(&out),
                                     "also write the results to this JSON file");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched bench [--threads N] [--batch B] [--seconds S] [--json FILE]\n\n"
                   "Measures, in one run: the single-core GEMM peak (GFLOP/s, best of square "
                   "sizes),\nand float training-step throughput of the MLP 784-256-10, LeNet-5 "
                   "and a 2-conv CNN\n(32/64 channels) on random 28x28 inputs, as a fraction of "
                   "that peak, and the INQ and ANA\nstep-time overhead (quantized epoch / float "
                   "epoch, MLP and LeNet). Ratios within\none run are what to compare across "
                   "machines."))
    return kExitOk;
  set_threads(threads);
  torch::manual_seed(0);
  json result;
  result["threads"] = threads;
  result["blas"] = blas_backend();

  double peak = 0;
  for (int64_t n : {256, 512, 1024}) {
    auto a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
    double t = time_per_call([&] { torch::mm_out(c, a, b); }, seconds / 3);
    double gf = 2.0 * n * n * n / t / 1e9;
    result["gemm"][std::to_string(n)] = gf;
    std::printf("gemm %4lld^3               %8.2f GFLOP/s\n", static_cast<long long>(n), gf);
    peak = std::max(peak, gf);
  }
  // LibTorch runs convolutions on oneDNN, whose kernels can beat OpenBLAS's sgemm on recent
  // AVX-512 cores; the peak is the best dense kernel of the two (a 3x3 conv, 64 -> 64
  // channels, 16x16 pixels, batch 32: 2*64*64*9*256*32 FLOPs).
  double onednn = 0;
  {
    auto x = torch::randn({32, 64, 16, 16}), w = torch::randn({64, 64, 3, 3});
    double t = time_per_call([&] { torch::conv2d(x, w, {}, 1, 1); }, seconds / 3);
    onednn = 2.0 * 64 * 64 * 9 * 256 * 32 / t / 1e9;
    std::printf("conv3x3 64->64 16x16 b32   %8.2f GFLOP/s (oneDNN path)\n", onednn);
  }
  const double blas_peak = peak;
  result["gemm_blas_peak_gflops"] = blas_peak;
  result["gemm_onednn_gflops"] = onednn;
  peak = std::max(peak, onednn);
  result["gemm_peak_gflops"] = peak;
  std::printf("peak (best of the two)     %8.2f GFLOP/s (BLAS: %s, %d thread%s)\n\n", peak,
              blas_backend().c_str(), threads, threads == 1 ? "" : "s");
  std::printf(
      "Linear layers run on the BLAS GEMM, convolutions on oneDNN: 'of BLAS' is the\n"
      "fraction of the BLAS GEMM peak, 'of peak' of the best dense kernel.\n\n");

  std::vector<NetBench> nets = {
      {"mlp", {{"type", "mlp"}, {"hidden", {256}}}, {1, 28, 28}, 0.5},
      {"lenet", {{"type", "lenet"}}, {1, 28, 28}, 0.3},
      {"cnn2", {{"type", "lenet"}, {"channels", {32, 64}}, {"fc", {128}}}, {1, 28, 28}, 0.3},
  };
  std::printf("%-8s %10s %10s %10s %8s %8s %8s\n", "network", "ms/step", "GFLOP/st", "GFLOP/s",
              "of BLAS", "of peak", "target");
  for (const auto& nb : nets) {
    auto net = inner::build_network(nb.spec, nb.input, 10);
    net->train();
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    auto x = torch::randn({batch, nb.input.channels, nb.input.height, nb.input.width});
    auto y = torch::randint(0, 10, {batch}, torch::kLong);
    double t = time_per_call(
        [&] {
          opt.zero_grad();
          auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
          loss.backward();
          opt.step();
        },
        seconds);
    double flops = train_step_flops(*net, batch);
    double gf = flops / t / 1e9;
    std::printf("%-8s %10.3f %10.4f %10.2f %7.1f%% %7.1f%% %7.0f%%\n", nb.name.c_str(), t * 1e3,
                flops / 1e9, gf, 100 * gf / blas_peak, 100 * gf / peak, 100 * nb.target);
    result["train"][nb.name] = {{"ms_per_step", t * 1e3},
                                {"gflop_per_step", flops / 1e9},
                                {"gflops", gf},
                                {"fraction_of_peak", gf / peak},
                                {"fraction_of_blas_peak", gf / blas_peak},
                                {"target_fraction", nb.target}};
  }

  // Quantization overhead: the same epoch (same data, batch, network) trained as float, as
  // INQ with half of every layer frozen (restore after every step, freeze at epoch start) and
  // as ANA (ternary weights and activations, uniform noise, expectation forward, dynamic
  // weight scale; every layer's sigma > 0 in the measured epoch, so every quantizer runs its
  // smooth forward and analytic backward).
  std::printf("\n%-8s %10s %10s %10s %8s %8s %8s %8s\n", "network", "float s/ep", "INQ s/ep",
              "ANA s/ep", "INQ/fl", "target", "ANA/fl", "target");
  for (const auto& nb : {nets[0], nets[1]}) {
    json base = json::parse(R"({"threads": 1, "data": {"format": "synthetic", "val_size": 128,
        "synthetic": {"n": 8320, "test_n": 128, "height": 28, "width": 28, "num_classes": 10}},
        "train": {"epochs": 3}})");
    base["threads"] = threads;
    base["network"] = nb.spec;
    base["train"]["batch_size"] = batch;
    json inq = base;
    inq["algorithm"] = "inq";
    inq["inq"] = {
        {"schedule", {{"family", "steps"}, {"portions", {0.5, 0.5, 1.0}}, {"epochs_per_step", 1}}}};
    // Epoch 0 starts ANA (scales, activation calibration) at sigma 0.5; the measured epoch 1
    // runs every layer at sigma 0.25; epoch 2 (not run) would be hard.
    json ana = base;
    ana["algorithm"] = "ana";
    ana["ana"] = json::parse(R"({"weights": {"levels": "ternary"},
        "activations": {"enabled": true, "levels": "ternary"}, "noise": "uniform",
        "strategy": "expectation", "schedule": {"family": "ana_window", "sigma0": 0.5,
        "shape": "linear", "layout": "overlapped"}})");
    auto epoch_seconds = [&](const json& j) {
      inner::RunConfig cfg = inner::parse_run_config(j);
      inner::Trainer t(cfg, inner::load_data(cfg, torch::kCPU), inner::make_algorithm(cfg));
      t.run(2);  // epoch 0 starts quantization (INQ: freezes half of every layer); epoch 1
                 // trains in the steady state
      return std::make_pair(t.history()[0]["seconds"].get<double>(),
                            t.history()[1]["seconds"].get<double>());
    };
    double tf = 1e30, tq = 1e30, ta = 1e30, tf0 = 1e30, tq0 = 1e30, ta0 = 1e30;
    for (int rep = 0; rep < 3; ++rep) {  // interleaved, best of 3: robust to a noisy machine
      auto f = epoch_seconds(base);
      auto q = epoch_seconds(inq);
      auto a = epoch_seconds(ana);
      tf0 = std::min(tf0, f.first);
      tf = std::min(tf, f.second);
      tq0 = std::min(tq0, q.first);
      tq = std::min(tq, q.second);
      ta0 = std::min(ta0, a.first);
      ta = std::min(ta, a.second);
    }
    // The same comparison step by step in CPU time (robust to other jobs on the machine): one
    // training step (forward, loss, backward, the algorithm's step hooks, SGD) on a fixed batch,
    // after epoch 0 (INQ: half frozen; ANA: every quantizer at sigma 0.5, smooth forward).
    auto step_cpu = [&](const json& j) {
      inner::RunConfig cfg = inner::parse_run_config(j);
      inner::Trainer t(cfg, inner::load_data(cfg, torch::kCPU), inner::make_algorithm(cfg));
      t.run(1);
      auto& net = *t.network();
      net.train();
      torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
      auto x = t.data().train.images.slice(0, 0, batch);
      auto y = t.data().train.labels.slice(0, 0, batch);
      return cpu_time_per_call(
          [&] {
            opt.zero_grad();
            torch::nn::functional::cross_entropy(net.forward(x), y).backward();
            t.algorithm().before_step(t);
            opt.step();
            t.algorithm().after_step(t);
          },
          seconds);
    };
    const double cf = step_cpu(base), cq = step_cpu(inq), ca = step_cpu(ana);
    std::printf("%-8s %10.3f %10.3f %10.3f %8.3f %8.2f %8.3f %8.2f   (wall s/epoch)\n",
                nb.name.c_str(), tf, tq, ta, tq / tf, 1.10, ta / tf, 1.50);
    std::printf("%-8s %10.2f %10.2f %10.2f %8.3f %8.2f %8.3f %8.2f   (CPU ms/step)\n", "", 1e3 * cf,
                1e3 * cq, 1e3 * ca, cq / cf, 1.10, ca / cf, 1.50);
    std::printf("%-8s first epoch (INQ freeze / ANA start and calibration): INQ %.3f, ANA %.3f\n",
                "", tq0 / tf0, ta0 / tf0);
    result["inq_overhead"][nb.name] = {{"float_epoch_s", tf},
                                       {"inq_epoch_s", tq},
                                       {"ratio", tq / tf},
                                       {"ratio_epoch_with_freeze", tq0 / tf0},
                                       {"cpu_ms_per_step_float", 1e3 * cf},
                                       {"cpu_ms_per_step_inq", 1e3 * cq},
                                       {"ratio_cpu_step", cq / cf},
                                       {"steps_per_epoch", 65}};
    result["ana_overhead"][nb.name] = {{"float_epoch_s", tf},
                                       {"ana_epoch_s", ta},
                                       {"ratio", ta / tf},
                                       {"ratio_first_epoch", ta0 / tf0},
                                       {"target", 1.5},
                                       {"steps_per_epoch", 65},
                                       {"cpu_ms_per_step_float", 1e3 * cf},
                                       {"cpu_ms_per_step_ana", 1e3 * ca},
                                       {"ratio_cpu_step", ca / cf}};
  }
  if (!out.empty()) atomic_write(out, result.dump(2) + "\n");
  return kExitOk;
}

}  // namespace qsched::cli
