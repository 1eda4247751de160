#include <vector>

#include "inner/base/json_text.h"

// The strict parser itself, without c10: the torch-free export reader (qsched_export_ref) uses
// it too. json_text.cpp wraps it in one-line c10::ValueErrors.
namespace qsched {

namespace {

// Builds the document with an explicit stack (no recursion), enforcing the rules of the header.
class StrictBuilder : public nlohmann::json_sax<json> {
 public:
  json root;
  std::string error;  // set when a rule was broken (the parse then stops)

  bool null() override { return put(json(nullptr)); }
  bool boolean(bool v) override { return put(json(v)); }
  bool number_integer(number_integer_t v) override { return put(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(json(v)); }
  // Numbers that overflow a double (1e999) never get here: nlohmann's lexer reports them as
  // a parse error ("number overflow").
  bool number_float(number_float_t v, const string_t&) override { return put(json(v)); }
  bool string(string_t& v) override { return put(json(std::move(v))); }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool key(string_t& k) override {
    if (stack_.back()->contains(k)) return fail("duplicate key \"" + k + "\" in an object");
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string m = e.what();
    const auto p = m.find("] ");
    return fail("JSON syntax error: " + (p == std::string::npos ? m : m.substr(p + 2)));
  }

 private:
  bool fail(std::string m) {
    if (error.empty()) error = std::move(m);
    return false;
  }
  // Places a finished value in the container on top of the stack (or as the root); returns the
  // stored value so that open() can push it.
  json* place(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_object()) return &(top[key_] = std::move(v));
    top.push_back(std::move(v));
    return &top.back();
  }
  bool put(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& empty) {
    if (static_cast<int>(stack_.size()) >= kMaxJsonDepth)
      return fail("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    stack_.push_back(place(std::move(empty)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  std::vector<json*> stack_;
  std::string key_;
};

}  // namespace

bool parse_json_strict(std::string_view text, json& out, std::string& error) {
  StrictBuilder b;
  const bool ok = json::sax_parse(text.begin(), text.end(), &b);
  if (ok && b.error.empty()) {
    out = std::move(b.root);
    return true;
  }
  error = b.error.empty() ? "JSON syntax error" : b.error;
  return false;
}

}  // namespace qsched
