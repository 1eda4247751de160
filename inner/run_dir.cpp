#include "inner/run_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "inner/base/json_text.h"
#include "inner/io.h"

namespace fs = std::filesystem;

namespace qsched {

namespace {

using json = nlohmann::json;

std::string marker_path(const std::string& dir) { return dir + "/" + kRunMarker; }

std::string article(const std::string& kind) {
  return (!kind.empty() && std::string("aeiou").find(kind[0]) != std::string::npos) ? "an " : "a ";
}

void write_marker(const std::string& dir, const std::string& kind) {
  json m = {{"format", "qsched-run"}, {"version", 1}, {"kind", kind}};
  atomic_write(marker_path(dir), m.dump() + "\n");
}

/// "<name>.tmp.<pid>" -> pid, or -1.
long tmp_pid(const std::string& name) {
  const size_t pos = name.rfind(".tmp.");
  if (pos == std::string::npos || pos == 0) return -1;
  const std::string digits = name.substr(pos + 5);
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stol(digits);
}

}  // namespace

DirOwner inspect_output_dir(const std::string& dir) {
  DirOwner o;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return o;
  TORCH_CHECK_VALUE(fs::is_directory(dir, ec), "output directory '", dir,
                    "' exists and is not a directory");
  const std::string mp = marker_path(dir);
  if (fs::exists(mp, ec)) {
    json m;
    std::string json_error;
    if (!parse_json_strict(read_whole_file(mp), m, json_error)) m = json();
    TORCH_CHECK_VALUE(m.is_object() && m.value("format", json()) == "qsched-run" &&
                          m.contains("kind") && m["kind"].is_string(),
                      "ownership marker '", mp,
                      "' is corrupt (expected {\"format\": \"qsched-run\", \"kind\": ...}); "
                      "remove it only if the directory is yours");
    o.state = DirOwner::kQsched;
    o.kind = m["kind"].get<std::string>();
    return o;
  }
  fs::directory_iterator it(dir, ec);
  TORCH_CHECK_VALUE(!ec, "cannot list output directory '", dir, "': ", ec.message());
  if (it == fs::directory_iterator()) {
    o.state = DirOwner::kEmpty;
    return o;
  }
  o.state = DirOwner::kForeign;
  o.example = it->path().filename().string();
  return o;
}

bool is_own_dir(const std::string& dir, const std::string& kind) {
  DirOwner o = inspect_output_dir(dir);
  return o.state == DirOwner::kQsched && o.kind == kind;
}

void claim_output_dir(const std::string& dir, const std::string& kind, bool resume, bool force) {
  TORCH_CHECK_VALUE(!dir.empty(), "no output directory given (--out DIR)");
  const DirOwner o = inspect_output_dir(dir);
  if (resume) {
    TORCH_CHECK_VALUE(o.state != DirOwner::kMissing && o.state != DirOwner::kEmpty,
                      "cannot resume: '", dir, "' ",
                      o.state == DirOwner::kMissing ? "does not exist"
                                                    : "is empty (its checkpoint does not exist)");
    TORCH_CHECK_VALUE(o.state == DirOwner::kQsched, "cannot resume: '", dir, "' is not a qsched ",
                      kind, " directory (no ", kRunMarker,
                      " marker; runs of an older qsched cannot be resumed by this one)");
    TORCH_CHECK_VALUE(o.kind == kind, "cannot resume: '", dir, "' is ", article(o.kind), "qsched ",
                      o.kind, " directory, not ", article(kind), kind,
                      " one (resume it with qsched ", o.kind, " --resume)");
  } else if (o.state == DirOwner::kQsched && o.kind != kind) {
    TORCH_CHECK_VALUE(force, "output directory '", dir, "' is ", article(o.kind), "qsched ", o.kind,
                      " directory, not ", article(kind), kind,
                      " one; choose another --out (or pass --force to write into it anyway)");
  } else if (o.state == DirOwner::kForeign) {
    TORCH_CHECK_VALUE(force, "output directory '", dir,
                      "' exists and was not made by qsched (it holds '", o.example, "' and no ",
                      kRunMarker,
                      " marker); choose another --out, or pass --force to write into it "
                      "(files of other names stay untouched)");
  }
  make_dirs(dir);
  if (o.state != DirOwner::kQsched || o.kind != kind) write_marker(dir, kind);
  remove_stale_temporaries(dir);
}

int remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  const std::string mp = marker_path(dir);
  if (!fs::exists(mp, ec)) return 0;
  const auto marker_time = fs::last_write_time(mp, ec);
  if (ec) return 0;
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const long pid = tmp_pid(it->path().filename().string());
    if (pid <= 0) continue;
    const bool gone = pid == static_cast<long>(::getpid()) ||
                      (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH);
    if (!gone) continue;
    std::error_code tec;
    const auto t = fs::last_write_time(it->path(), tec);
    if (tec || t < marker_time) continue;  // older than qsched's claim: not ours
    if (fs::remove(it->path(), tec)) ++removed;
  }
  return removed;
}

}  // namespace qsched
