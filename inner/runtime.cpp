#include "inner/runtime.h"

#include <dlfcn.h>

#include <atomic>
#include <csignal>

#include "inner/base/stop.h"

namespace qsched {

std::string blas_backend() {
  return dlsym(RTLD_DEFAULT, "openblas_get_config") ? "openblas" : "reference";
}

std::string blas_warning() {
  if (blas_backend() == "openblas") return "";
  return "warning: libtorch is running on the reference BLAS (about 25x slower than OpenBLAS); "
         "install libopenblas-dev (scripts/setup.sh does) and select it with "
         "update-alternatives --config libblas.so.3-x86_64-linux-gnu";
}

void set_threads(int n) {
  TORCH_CHECK_VALUE(n >= 1, "threads = ", n, ". Violated constraint: threads >= 1");
  torch::set_num_threads(n);
  using SetFn = void (*)(int);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
  static bool interop_set = false;
  if (!interop_set) {
    try {
      at::set_num_interop_threads(1);
    } catch (const c10::Error&) {
      // Already started (only settable once per process); harmless.
    }
    interop_set = true;
  }
}

torch::Device parse_device(const std::string& s) {
  TORCH_CHECK_VALUE(s == "cpu" || s.rfind("cuda", 0) == 0, "device = \"", s,
                    "\". Violated constraint: device is cpu, cuda or cuda:K");
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(s);
  } catch (const c10::Error&) {
    TORCH_CHECK_VALUE(false, "device = \"", s,
                      "\" is not a valid device string (cpu, cuda, cuda:K)");
  }
  if (d.is_cuda()) {
    TORCH_CHECK_VALUE(
        torch::cuda::is_available(), "device = \"", s,
        "\" but this LibTorch has no CUDA support or no GPU is visible; use --device cpu "
        "or build against a CUDA LibTorch via CMAKE_PREFIX_PATH");
    TORCH_CHECK_VALUE(!d.has_index() || d.index() < static_cast<int>(torch::cuda::device_count()),
                      "device = \"", s, "\" but only ", torch::cuda::device_count(),
                      " GPU(s) exist");
  }
  return d;
}

bool interrupted() { return interrupt_token().stop_requested(); }
void set_interrupted(bool v) { set_interrupt_for_testing(v); }

std::mutex& global_generator_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace qsched
