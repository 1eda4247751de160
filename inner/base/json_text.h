#pragma once
// Strict JSON text -> nlohmann::json, for every JSON document qsched reads (configs, specs,
// schedule.json, controller.json, export headers, summaries, --set values).
//
//   json cfg = read_json_file("run.json");           // file: regular, <= kMaxJsonFileBytes
//   json v = parse_json_text(text, "--set 'a=b'");   // text already in memory
//
// Rules beyond the JSON grammar, each a one-line c10::ValueError naming the document:
//   - nesting depth <= kMaxJsonDepth (a deeply nested array cannot exhaust the stack later,
//     when the value is printed, compared or destroyed);
//   - no duplicate keys in an object (nlohmann would keep the last one silently);
//   - every number finite (1e999 is not infinity) and integers that fit 64 bits stay integers;
//   - files are regular files (a directory is refused by name) of bounded size.
// Torch-free: parse_json_strict needs only nlohmann (json_strict.cpp); the throwing functions
// use c10's exception header.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace qsched {

using json = nlohmann::json;

/// Deepest nesting of arrays/objects accepted in any document (qsched's own need at most 6).
inline constexpr int kMaxJsonDepth = 64;
/// Largest JSON file read (configs and specs are kilobytes; summaries and schedules of long
/// runs stay far below this).
inline constexpr std::size_t kMaxJsonFileBytes = 64u << 20;

/// The strict parser without exceptions: false and `error` set ("nesting deeper than 64
/// levels", "JSON syntax error: ...") when `text` breaks a rule. No c10 needed.
bool parse_json_strict(std::string_view text, json& out, std::string& error);

/// Parses `text` strictly; errors say "<what>: <reason>".
json parse_json_text(std::string_view text, const std::string& what);

/// Whether `text` is JSON syntax at all (used by --set to decide between a JSON value and a
/// plain string); a syntactically valid document that breaks a rule above still throws.
bool looks_like_json(std::string_view text);

/// Reads and parses a JSON file: missing, unreadable, a directory, larger than
/// kMaxJsonFileBytes or invalid -> one-line c10::ValueError naming the file.
json read_json_file(const std::string& path);

/// Human-readable JSON type name ("number", "string", ...), for messages.
std::string json_type_name(const json& j);

}  // namespace qsched
