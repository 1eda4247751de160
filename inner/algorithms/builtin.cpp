// The built-in algorithms: one registration line each (see registry.h for adding one).
#include <mutex>

#include "inner/algorithms/registry.h"
#include "inner/ana/ana.h"
#include "inner/inq/inq.h"

namespace qsched::inner {

namespace {

AlgorithmSpec float_spec() {
  AlgorithmSpec s;
  s.name = "float";
  s.doc = "plain float training (no quantization, no schedule)";
  s.has_section = false;
  s.create = [](const RunConfig&, std::unique_ptr<sched::Schedule>) {
    return std::make_unique<Algorithm>();
  };
  s.quantizes = [](const json&) { return std::string("nothing (float)"); };
  return s;
}

}  // namespace

void register_builtin_algorithms() {
  static std::once_flag once;
  std::call_once(once, [] {
    detail::add_algorithm(float_spec());
    detail::add_algorithm(inq::spec());
    detail::add_algorithm(ana::spec());
  });
}

}  // namespace qsched::inner
