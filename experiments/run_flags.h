#pragma once
// Flags shared by every command that starts training runs (train, and later sweep, apply,
// compare): a JSON config plus overrides.
//
//   --config FILE   JSON config (inner/config.h documents every key)
//   --epochs N --subset N --seed S --data DIR --threads N --device D   common overrides
//   --set key.path=value                                                any field (repeatable)
//   --schedule FILE   replay a recorded schedule.json (sets <algorithm>.schedule)
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "inner/config.h"

namespace qsched::cli {

struct RunFlags {
  std::string config;
  std::vector<std::string> sets;
  int64_t epochs = -1, subset = -1, seed = -1;
  int threads = -1;
  std::string data, device;
  std::string schedule;  ///< --schedule FILE: replay a recorded schedule.json

  /// Registers the flags on `desc`.
  void add_to(boost::program_options::options_description& desc);
  /// True when any flag that changes the config was given.
  bool any_override() const;
  /// The config document: `base` (or --config FILE when given), then the overrides.
  json document(const json& base = json::object()) const;
  /// document() parsed and validated.
  inner::RunConfig resolve(const json& base = json::object()) const;
};

/// A numeric flag whose value must lie in [lo, hi]: outside it, parsing fails with
/// "--name = v. Violated constraint: lo <= name <= hi" (exit code 2), instead of the value being
/// ignored or truncated. The target keeps its initial value when the flag is not given.
template <class T>
boost::program_options::typed_value<T>* ranged(T* target, const std::string& name, T lo, T hi) {
  return boost::program_options::value(target)->notifier([name, lo, hi](const T& v) {
    if (!(v >= lo && v <= hi)) {  // written so that NaN is outside too
      throw boost::program_options::error("--" + name + " = " + std::to_string(v) +
                                          ". Violated constraint: " + std::to_string(lo) +
                                          " <= " + name + " <= " + std::to_string(hi));
    }
  });
}

/// Parses `args` against `desc`; prints help and returns false on --help. Unknown flags and
/// bad values throw boost::program_options::error (exit code 2).
bool parse_flags(const std::vector<std::string>& args,
                 const boost::program_options::options_description& desc,
                 boost::program_options::variables_map& vm, const char* usage);

}  // namespace qsched::cli
