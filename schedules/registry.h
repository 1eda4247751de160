#pragma once
// The registry of schedule families: every "schedule" spec of a config goes through it.
//
//   spec {"family": "power", "alpha": 2, "layout": "stagger", "delta": 1}
//     --Registry::create(name, params, quantity, what)-->
//        1. the family must be registered (else: error listing every registered family)
//        2. its quantity must match the algorithm's (fraction: INQ, noise: ANA, both)
//        3. every key must be a declared parameter (else: error listing the valid keys), of the
//           declared type, inside the declared range, and apply to the quantity asked for
//        4. the entry's factory builds the Schedule (it may check relations between keys)
//     --materialize()/check_table() (schedules/schedule.h)--> invariants, the one place
//
// Entries declare their parameters (name, type, default, range, doc) so that
// `qsched schedules list`, the sweep and the conformance tests can enumerate them
// (registries that say what they accept: OpenSpiel's game_parameters.h). Built-in families are
// added by register_builtin_families() (explicit registration, no static self-registration:
// static libraries drop unreferenced self-registering objects).
//
// Built-in families (formulas at the top of schedules/families.h and ana_families.h):
//   inq_paper, steps        INQ accumulated portions (Zhou et al. 2017), fraction
//   table, file             explicit per-layer table / replay of a recorded schedule.json, both
//   ana_window              ANA bounded windows (Spallanzani et al. 2019/2022), noise
//   linear, cosine, logistic, power, exponential, geometric
//                           windowed progress curves with per-layer composition, both
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::sched {

/// kJson: any JSON, checked by the family's factory (e.g. a table's rows).
enum class ParamType { kInt, kNumber, kString, kNumberList, kJson };
std::string to_string(ParamType t);

/// Which quantities a family or a parameter applies to.
enum class Applies { kFraction, kNoise, kBoth };
std::string to_string(Applies a);
bool applies_to(Applies a, Quantity q);

/// One declared parameter of a family.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::kNumber;
  /// Default value; null = optional without a default (the factory decides, e.g. "window").
  json def;
  /// Numbers (and every element of a number list): lo <= x <= hi, with strict bounds when
  /// lo_open / hi_open. Ignored for strings.
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  /// Strings: the accepted values (empty = any string).
  std::vector<std::string> choices;
  Applies applies = Applies::kBoth;
  std::string doc;

  /// "alpha > 0", "0 <= center <= 1", "layout in {a, b}" (for messages and listings).
  std::string rule() const;
  /// Throws c10::ValueError "<what>.<name> ..." when `v` has the wrong type or range.
  void check(const json& v, const std::string& what) const;
};

/// Builds a schedule from a spec whose keys, types and ranges the registry has checked.
/// `given` holds the keys of the user's spec (without "family"); `resolved` adds the defaults
/// of the parameters that apply to `q`.
using FamilyFactory = std::function<std::unique_ptr<Schedule>(
    const json& given, const json& resolved, Quantity q, const std::string& what)>;

struct FamilyEntry {
  std::string name;
  Applies quantity = Applies::kBoth;
  std::string doc;  ///< one line: the formula in short and its source
  std::vector<ParamSpec> params;
  FamilyFactory make;
  /// False for families whose parameters cannot be drawn at random (table, file): the
  /// conformance tests build them from other families' tables instead.
  bool parametric = true;

  const ParamSpec* param(const std::string& key) const;
};

class Registry {
 public:
  /// Adds a family; a duplicate name is an internal error.
  void add(FamilyEntry e);
  /// Sorted names of the registered families.
  std::vector<std::string> registered_names() const;
  /// The entry of `name`; an unknown name is a c10::ValueError listing every family.
  const FamilyEntry& entry(const std::string& name, const std::string& what) const;
  /// Validates `params` (an object without "family", or with "family" == name) and creates
  /// the schedule for quantity `q`. `what` names the spec in errors ("config: inq.schedule").
  std::unique_ptr<Schedule> create(const std::string& name, const json& params, Quantity q,
                                   const std::string& what) const;
  /// The spec with every applicable default filled in (the form describe() returns).
  json resolve(const std::string& name, const json& params, Quantity q,
               const std::string& what) const;

 private:
  std::vector<FamilyEntry> entries_;
};

/// Registers the built-in families listed at the top of this file.
void register_builtin_families(Registry& r);

/// The process-wide registry with the built-in families (created on first use, thread-safe).
const Registry& registry();

}  // namespace qsched::sched
