#include "inner/base/json_text.h"

#include <c10/util/Exception.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qsched {

json parse_json_text(std::string_view text, const std::string& what) {
  json out;
  std::string error;
  TORCH_CHECK_VALUE(parse_json_strict(text, out, error), what, ": ", error);
  return out;
}

bool looks_like_json(std::string_view text) { return json::accept(text.begin(), text.end()); }

json read_json_file(const std::string& path) {
  struct stat st {};
  TORCH_CHECK_VALUE(::stat(path.c_str(), &st) == 0, "cannot open JSON file '", path,
                    "': ", std::strerror(errno));
  TORCH_CHECK_VALUE(!S_ISDIR(st.st_mode), "JSON file '", path, "' is a directory, expected a file");
  TORCH_CHECK_VALUE(S_ISREG(st.st_mode), "JSON file '", path, "' is not a regular file");
  TORCH_CHECK_VALUE(static_cast<std::size_t>(st.st_size) <= kMaxJsonFileBytes, "JSON file '", path,
                    "' has ", st.st_size, " bytes; the limit is ", kMaxJsonFileBytes);
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK_VALUE(in.good(), "cannot open JSON file '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  TORCH_CHECK_VALUE(!in.bad(), "cannot read JSON file '", path, "'");
  return parse_json_text(s.str(), "JSON file '" + path + "'");
}

std::string json_type_name(const json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "boolean";
  if (j.is_number_integer()) return "integer";
  if (j.is_number()) return "number";
  if (j.is_string()) return "string";
  if (j.is_array()) return "array";
  return "object";
}

}  // namespace qsched
