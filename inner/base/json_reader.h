#pragma once
// Strict reading of JSON configs and specs.
//
// nlohmann's value()/_WITH_DEFAULT silently ignore misspelled keys; JsonReader does not:
//
//   JsonReader r(j, "train");                // j must be an object
//   int epochs = r.get<int>("epochs", 10);   // optional, type-checked
//   double lr = r.required<double>("lr");    // missing -> error
//   r.check(epochs >= 1, "epochs", epochs, "epochs >= 1");
//   JsonReader opt = r.child("optimizer");   // nested object, path "train.optimizer"
//   r.finish();                              // any key not read -> error listing valid keys
//
// Every error is a c10::ValueError (TORCH_CHECK_VALUE) with one line naming the full path, the
// value and the rule, e.g. "config: train.epochs = 0. Violated constraint: epochs >= 1".
// Torch-free (c10's exception header only); the JSON text itself is parsed by json_text.h.
#include <c10/util/Exception.h>

#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "inner/base/json_text.h"

namespace qsched {

class JsonReader {
 public:
  /// `what` prefixes every message ("config", "network spec", ...); `path` is the dotted path
  /// of `j` inside the document ("" for the root).
  JsonReader(const json& j, std::string path, std::string what = "config");

  bool has(const std::string& key) const { return j_->contains(key); }

  /// Optional key with a default; a present key of the wrong type is an error.
  template <class T>
  T get(const std::string& key, const T& def) {
    declare(key);
    if (!j_->contains(key)) return def;
    return convert<T>(j_->at(key), key);
  }
  /// Required key.
  template <class T>
  T required(const std::string& key) {
    declare(key);
    TORCH_CHECK_VALUE(j_->contains(key), what_, ": missing required key '", full(key), "'",
                      valid_suffix());
    return convert<T>(j_->at(key), key);
  }
  /// The raw JSON of a key (declared as known); null json when absent.
  json raw(const std::string& key) {
    declare(key);
    return j_->contains(key) ? j_->at(key) : json();
  }
  /// Nested object (must be an object when present; an absent key gives an empty object).
  JsonReader child(const std::string& key);

  /// Declares a key as valid without reading it (e.g. read elsewhere).
  void declare(const std::string& key) { known_.insert(key); }

  /// Throws "<what>: <path>.<key> = <value>. Violated constraint: <rule>" unless `ok`.
  template <class V>
  void check(bool ok, const std::string& key, const V& value, const std::string& rule) const {
    if (ok) return;
    std::ostringstream v;
    v << value;
    TORCH_CHECK_VALUE(false, what_, ": ", full(key), " = ", v.str(),
                      ". Violated constraint: ", rule);
  }
  /// Throws for a string value not in `allowed`, listing the allowed values.
  void check_one_of(const std::string& key, const std::string& value,
                    const std::vector<std::string>& allowed) const;

  /// Rejects every key that was never declared/read, listing the valid keys.
  void finish() const;

  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& path() const { return path_; }
  const std::string& what() const { return what_; }

 private:
  template <class T>
  T convert(const json& v, const std::string& key) const {
    bool ok;
    if constexpr (std::is_same_v<T, bool>) {
      ok = v.is_boolean();
    } else if constexpr (std::is_integral_v<T>) {
      ok = v.is_number_integer();
      if (ok && std::is_unsigned_v<T>) ok = v.is_number_unsigned() || v.get<int64_t>() >= 0;
      if (ok && !fits<T>(v)) {
        // A value that does not fit T would be truncated silently by get<T>().
        TORCH_CHECK_VALUE(false, what_, ": ", full(key), " = ", v.dump(), " is out of range (",
                          +std::numeric_limits<T>::min(), "..", +std::numeric_limits<T>::max(),
                          ")");
      }
    } else if constexpr (std::is_floating_point_v<T>) {
      ok = v.is_number();
    } else if constexpr (std::is_same_v<T, std::string>) {
      ok = v.is_string();
    } else {
      ok = true;  // containers: let nlohmann check, and report its failure below
    }
    TORCH_CHECK_VALUE(ok, what_, ": ", full(key), " has type ", json_type_name(v), ", expected ",
                      expected_name<T>());
    try {
      return v.get<T>();
    } catch (const json::exception&) {
      TORCH_CHECK_VALUE(false, what_, ": ", full(key), " has the wrong type, expected ",
                        expected_name<T>());
    }
  }
  template <class T>
  static bool fits(const json& v) {
    if (v.is_number_unsigned()) {
      return v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    const int64_t x = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      return x >= 0 && static_cast<uint64_t>(x) <= std::numeric_limits<T>::max();
    } else {
      return x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max();
    }
  }
  template <class T>
  static std::string expected_name() {
    if constexpr (std::is_same_v<T, bool>)
      return "boolean";
    else if constexpr (std::is_integral_v<T>)
      return "integer";
    else if constexpr (std::is_floating_point_v<T>)
      return "number";
    else if constexpr (std::is_same_v<T, std::string>)
      return "string";
    else
      return "array/object";
  }
  std::string valid_suffix() const;

  const json* j_;
  std::string path_, what_;
  std::set<std::string> known_;
};

/// Applies `--set a.b.c=value` overrides: value is parsed as JSON when it parses (numbers,
/// booleans, arrays), else taken as a string. Intermediate objects are created.
void apply_override(json& j, const std::string& assignment);

}  // namespace qsched
