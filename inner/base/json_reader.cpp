#include "inner/base/json_reader.h"

#include <regex>

namespace qsched {

JsonReader::JsonReader(const json& j, std::string path, std::string what)
    : j_(&j), path_(std::move(path)), what_(std::move(what)) {
  TORCH_CHECK_VALUE(j.is_object(), what_, ": ", path_.empty() ? "document" : path_,
                    " must be a JSON object, got ", json_type_name(j));
}

JsonReader JsonReader::child(const std::string& key) {
  declare(key);
  static const json kEmpty = json::object();
  if (!j_->contains(key)) return JsonReader(kEmpty, full(key), what_);
  return JsonReader(j_->at(key), full(key), what_);
}

void JsonReader::check_one_of(const std::string& key, const std::string& value,
                              const std::vector<std::string>& allowed) const {
  for (const auto& a : allowed)
    if (a == value) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  TORCH_CHECK_VALUE(false, what_, ": ", full(key), " = \"", value, "\" is not one of: ", list);
}

std::string JsonReader::valid_suffix() const {
  std::string list;
  for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
  return list.empty() ? "" : " (valid keys: " + list + ")";
}

void JsonReader::finish() const {
  for (auto it = j_->begin(); it != j_->end(); ++it) {
    TORCH_CHECK_VALUE(known_.count(it.key()), what_, ": unknown key '", full(it.key()), "'",
                      valid_suffix());
  }
}

void apply_override(json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  TORCH_CHECK_VALUE(eq != std::string::npos && eq > 0, "--set '", assignment,
                    "': expected key.path=value");
  std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  // JSON syntax, and anything shaped like a number, is parsed strictly (so 1e999 or duplicate
  // keys are errors, not strings); anything else is the string itself.
  static const std::regex kNumber(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
  const bool is_json = looks_like_json(value) || std::regex_match(value, kNumber);
  const json v = is_json ? parse_json_text(value, "--set '" + assignment + "'") : json(value);
  json* cur = &j;
  size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    std::string part =
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    TORCH_CHECK_VALUE(!part.empty(), "--set '", assignment, "': empty path component");
    TORCH_CHECK_VALUE(cur->is_object(), "--set '", assignment, "': '", part,
                      "' is inside a value that is not an object");
    if (dot == std::string::npos) {
      (*cur)[part] = v;
      return;
    }
    if (!cur->contains(part)) (*cur)[part] = json::object();
    cur = &(*cur)[part];
    start = dot + 1;
  }
}

}  // namespace qsched
