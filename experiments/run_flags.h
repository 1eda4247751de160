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

/// Parses `args` against `desc`; prints help and returns false on --help. Unknown flags and
/// bad values throw boost::program_options::error (exit code 2).
bool parse_flags(const std::vector<std::string>& args,
                 const boost::program_options::options_description& desc,
                 boost::program_options::variables_map& vm, const char* usage);

}  // namespace qsched::cli
