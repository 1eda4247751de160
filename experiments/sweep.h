#pragma once
// `qsched sweep`: measures hand-coded schedules. A grid file names a family and the points to
// try; every (point, seed) is one full training run (inner/run.h), J runs in parallel threads
// with one intra-op thread each; one row per finished run goes to <out>/results.csv.
//
// Grid file (JSON; unknown keys are errors):
//   {"family": "power",                       // schedule family (qsched schedules list), or
//                                             // sweep it: "grid": {"family": ["linear", ...]}
//    "fixed": {"layout": "stagger"},          // schedule parameters of every point
//    "grid": {"alpha": [0.5, 1, 2],           // cartesian product over the listed values;
//             "delta": [-1, 0, 1],            // keys with a dot are config paths
//             "train.epochs": [4, 8]},        // (accuracy vs compute, networks, ...)
//    "random": {"count": 20, "seed": 0,       // or random search: uniform in [lo, hi]
//               "ranges": {"alpha": [0.25, 4],//   (integers when both bounds are integers),
//                          "layout": ["overlapped", "stagger"]}},   // or a choice of values
//    "config": {"data.subset": 5000}}         // config overrides (dotted paths) for every run
// Exactly one of "grid" and "random". Points are enumerated deterministically (keys in sorted
// order, the last key fastest; random points from the seed), so point i is the same on rerun.
//
// Run r = (point p, seed s), s = 0..N-1 (the config's "seed"), config = base config (file, CLI
// overrides), then grid "config", then the point's dotted keys, then
// <alg>.schedule = {"family", fixed..., point's schedule keys}, threads = 1.
//   <out>/.qsched-run                     ownership marker, kind "sweep" (inner/run_dir.h): an
//                                         existing --out without it is refused (unless force)
//   <out>/grid.json, <out>/config.json    the sweep's definition (a rerun must match them)
//   <out>/runs/p<p>_s<s>/                 the run directory (resumed from its checkpoint when
//                                         a killed sweep is restarted; one killed before its
//                                         first checkpoint starts again; one that is not a
//                                         qsched train run stops the sweep before any run)
//   <out>/results.csv                     one row per finished (point, seed), sorted; rewritten
//                                         atomically after every run (inner/io.h)
// A point whose schedule or config is invalid (checked before training: the schedule is
// materialized for the run's T and L) gets status "invalid" and the reason in "error", is
// reported on stderr and skipped; the sweep continues. A results.csv that does not parse or
// does not belong to this grid is a c10::ValueError and is never overwritten.
//
// results.csv columns: point, family, <one column per swept key>, network, algorithm, bits,
// seed, epochs, status (ok | diverged | invalid), test_acc, test_loss, val_acc, val_loss
// (of the hardened network), seconds (training time), schedule (the spec, JSON), error.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "inner/base/json_reader.h"

namespace qsched::cli {

struct SweepGrid {
  std::string family;  ///< fixed family ("" when "family" is a grid key)
  json fixed = json::object();
  json config = json::object();   ///< dotted path -> value
  std::vector<std::string> keys;  ///< swept keys, sorted
  std::vector<json> points;       ///< each an object key -> value

  /// Parses and validates a grid document; `what` names it in errors.
  static SweepGrid from_json(const json& j, const std::string& what);
  /// The schedule spec of point i.
  json schedule_spec(size_t i) const;
};

/// One row of results.csv (all fields as text, in header order).
using CsvRow = std::vector<std::string>;

/// Quoting for CSV fields (RFC 4180: quotes when the field has a comma, quote or newline).
std::string csv_field(const std::string& s);
/// Parses CSV text into rows; a malformed quote is a c10::ValueError naming `what` and the line.
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& what);

/// The header of results.csv for a grid.
std::vector<std::string> results_header(const SweepGrid& g);

struct SweepOptions {
  std::string out_dir;
  int seeds = 1;
  int jobs = 1;
  bool progress = true;
  /// Use an --out that is not a qsched sweep directory, and run directories in it that are not
  /// the sweep's (files of other names are left alone; nothing is deleted).
  bool force = false;
};

/// Runs (or resumes) a sweep. Returns 0 when every run finished, 130 when interrupted.
int run_sweep(const json& base_config, const SweepGrid& grid, const json& grid_doc,
              const SweepOptions& opt);

/// Writes <out>/report.md (+ PNG plots when gnuplot is available; `require_plots` makes a
/// missing gnuplot an error) from <out>/results.csv and the run directories.
void write_sweep_report(const std::string& out_dir, bool require_plots);

/// The 97.5% quantile of Student's t with `df` degrees of freedom (95% two-sided intervals;
/// table up to 20, then 2.05 / 2.01 / 1.96); NaN for df <= 0.
double t975(int64_t df);

/// Mean of `v` and the half-width of its 95% t-interval (NaN with fewer than 2 values).
struct MeanCi {
  int64_t n = 0;
  double mean = 0, ci = NAN;
};
MeanCi mean_ci(const std::vector<double>& v);

/// Loads <out>/results.csv as header + rows (validated: every row has the header's width).
std::pair<std::vector<std::string>, std::vector<CsvRow>> load_results(const std::string& out_dir);

}  // namespace qsched::cli
