#include "inner/json_reader.h"

#include <fstream>

namespace qsched {

std::string json_type_name(const json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "boolean";
  if (j.is_number_integer()) return "integer";
  if (j.is_number()) return "number";
  if (j.is_string()) return "string";
  if (j.is_array()) return "array";
  return "object";
}

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

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  TORCH_CHECK_VALUE(in.good(), "cannot open JSON file '", path, "'");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    std::string msg = e.what();
    TORCH_CHECK_VALUE(false, "JSON syntax error in '", path, "': ", msg);
  }
}

void apply_override(json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  TORCH_CHECK_VALUE(eq != std::string::npos && eq > 0, "--set '", assignment,
                    "': expected key.path=value");
  std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  json v;
  try {
    v = json::parse(value);
  } catch (const json::parse_error&) {
    v = value;
  }
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
