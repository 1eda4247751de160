#pragma once
// The algorithm registry: the config's "algorithm" key -> an Algorithm for the Trainer.
//
//   config {"algorithm": "inq", "inq": {...}}
//     parse_run_config (inner/config.h)
//        1. "algorithm" must name a registered algorithm (else: error listing them)
//        2. a section named after another algorithm is an error; the algorithm's own section
//           goes to its spec's resolve(): validated once, defaults filled in, and that resolved
//           section is what config.json records (every algorithm, so a run directory says
//           everything the run used)
//     make_algorithm(cfg, schedule)
//        3. the spec's create() builds the Algorithm from the resolved section
//
// A spec also says what the algorithm is to the rest of qsched, so that meta/ and experiments/
// ask the algorithm and never compare its name: what its schedule controls (`quantity`: none
// for float training, INQ's frozen fractions, ANA's noise levels), what it quantizes (a short
// label for tables), and whether its inner run is differentiable in its schedule values
// (meta-gradients need that, see Algorithm::differentiable in inner/trainer.h).
//
// Built-in algorithms are added by register_builtin_algorithms() (inner/algorithms/builtin.cpp:
// one line each; explicit registration as schedules/registry.h does). To add one: a folder
// inner/<name>/ with its Algorithm and its spec, and one line in builtin.cpp. A test (or a
// program) may add its own with register_algorithm().
//
//   "float"  plain training (the base Algorithm, all hooks no-ops), no section
//   "inq"    incremental network quantization, section "inq" (inner/inq/inq.h)
//   "ana"    additive noise annealing, section "ana" (inner/ana/ana.h)
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "inner/config.h"
#include "inner/trainer.h"
#include "schedules/schedule.h"

namespace qsched::inner {

struct AlgorithmSpec {
  std::string name;
  std::string doc;  ///< one line: what it is and its source
  /// What its schedule gives per layer and epoch; nullopt: the algorithm takes no schedule.
  std::optional<sched::Quantity> quantity;
  /// Whether it has a config section (named `name`); when false a section is an error.
  bool has_section = true;
  /// Validates the user's section (an object; {} when absent) and returns it with every
  /// default filled in (strict keys; errors name "<name>.<key>"). parse_run_config stores the
  /// result, so create() and every reader of the section see resolved values.
  std::function<json(const json& section)> resolve;
  /// The algorithm for a parsed config (its section resolved). `schedule`, when given, replaces
  /// the section's schedule; make_algorithm has checked that it gives `quantity`.
  std::function<std::unique_ptr<Algorithm>(const RunConfig& cfg,
                                           std::unique_ptr<sched::Schedule> schedule)>
      create;
  /// The schedule spec of a resolved section (algorithms with a quantity).
  std::function<json(const json& resolved)> schedule_of;
  /// Short label of what a resolved section quantizes, for tables ("5-bit pow2 weights").
  std::function<std::string(const json& resolved)> quantizes;
  /// The inner run is differentiable in the schedule values (Algorithm::differentiable).
  bool differentiable = false;
};

/// Adds an algorithm; a second algorithm of the same name is an error (std::logic_error).
void register_algorithm(AlgorithmSpec spec);
/// Registered names in registration order (built-ins first).
std::vector<std::string> algorithm_names();
/// The spec of `name`; an unknown name is a c10::ValueError listing the registered ones.
const AlgorithmSpec& algorithm_spec(const std::string& name);
/// Adds float, inq and ana (idempotent; every function of this header calls it first, so
/// built-ins always come first).
void register_builtin_algorithms();
namespace detail {
/// register_algorithm without the built-ins (what register_builtin_algorithms uses).
void add_algorithm(AlgorithmSpec spec);
}  // namespace detail

/// The spec of an algorithm that must take a schedule; one without (float training) is a
/// c10::ValueError "<what> = "float" has no schedule; use an algorithm that has one (inq, ana)"
/// (`what` names the key, e.g. "meta config: run.algorithm").
const AlgorithmSpec& scheduled_algorithm(const std::string& name, const std::string& what);

/// Creates the algorithm `cfg.algorithm` names from its resolved section. `schedule`, when
/// given, replaces the schedule of the algorithm's section (e.g. a schedule object built in
/// code); it must give the algorithm's quantity (INQ fractions, ANA noise levels), else
/// c10::ValueError. An algorithm without a quantity takes none.
std::unique_ptr<Algorithm> make_algorithm(const RunConfig& cfg,
                                          std::unique_ptr<sched::Schedule> schedule = nullptr);

}  // namespace qsched::inner
