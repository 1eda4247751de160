#pragma once
// Output directories that qsched owns, and how it treats directories it does not.
//
// Every command that writes a directory (train, apply, meta-train, sweep, compare, demo, and
// the runs inside sweep / compare / demo) writes the marker <dir>/.qsched-run first:
//
//     {"format": "qsched-run", "version": 1, "kind": "train"}
//
// and from then on treats the directory as its own. Before it writes anything into an existing
// directory, claim_output_dir looks at it:
//
//   does not exist, or empty               -> created / taken, marker written
//   marker of the same kind                -> accepted: the command resumes or continues it
//   anything else: files qsched did not    -> c10::ValueError naming the directory (exit 2),
//   write, another kind of qsched run, a      unless `force`: then the marker is written and
//   directory of an older qsched (no marker)  the command writes its own files by name
//                                             (config.json, metrics.jsonl, ...) next to the
//                                             others, which it leaves alone
//   `resume` and no marker of this kind    -> c10::ValueError (force does not change that)
//
// qsched never removes a directory tree. The only files it deletes are its own: temporary
// files "<name>.tmp.<pid>" of atomic_write (inner/io.h) that a killed process left behind
// (removed by claim_output_dir when that process is gone and the file is younger than the
// marker), and a PES meta-training run's superseded inner checkpoints (meta/outer_loop.h).
#include <string>

namespace qsched {

/// File name of the ownership marker.
constexpr const char* kRunMarker = ".qsched-run";

/// What an output directory is, as far as qsched can tell.
struct DirOwner {
  enum State { kMissing, kEmpty, kQsched, kForeign } state = kMissing;
  std::string kind;     ///< kQsched: the marker's kind
  std::string example;  ///< kForeign: one entry that is there (for messages)
};

/// Looks at `dir` without changing anything. A marker that does not parse is a c10::ValueError.
DirOwner inspect_output_dir(const std::string& dir);

/// Takes `dir` as the output directory of a qsched command of `kind` ("train", "apply",
/// "meta-train", "sweep", "compare", "demo") as described above, then removes stale
/// temporary files in it. Throws c10::ValueError when it refuses; IoError when the directory or
/// the marker cannot be written.
void claim_output_dir(const std::string& dir, const std::string& kind, bool resume, bool force);

/// True when `dir` carries a marker of `kind` (what a run of that kind may continue).
bool is_own_dir(const std::string& dir, const std::string& kind);

/// Removes "<name>.tmp.<pid>" files directly in `dir` whose process no longer exists (or is
/// this process, which has not written there yet) and that are not older than the marker.
/// Returns how many were removed. Does nothing in a directory without a marker.
int remove_stale_temporaries(const std::string& dir);

}  // namespace qsched
