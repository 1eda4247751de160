#pragma once
// Helpers of the schedule commands (`qsched schedules`, `qsched sweep`, `qsched sweep-report`):
// the schedule a config produces, tables as text, and plots through gnuplot.
//
//   config --schedule_setup()--> {algorithm, spec, quantity, T, L}
//          --materialize-------> ScheduleTable (layers x epochs, the values a run would use)
//
// T is train.epochs - <alg>.pretrain_epochs (the quantization epochs), L the network's
// quantizable layers minus <alg>.exclude, exactly as inner/inq and inner/ana count them.
// Plots: gnuplot (Debian gnuplot-nox, pngcairo or png terminal) runs as a subprocess on a
// script file; a missing gnuplot is a c10::ValueError saying which package to install.
#include <string>
#include <vector>

#include "inner/config.h"
#include "schedules/schedule.h"

namespace qsched::cli {

struct ScheduleSetup {
  std::string algorithm;  ///< "inq" | "ana"
  json spec;              ///< the <alg>.schedule spec (its default when absent)
  sched::Quantity quantity = sched::Quantity::kFraction;
  int64_t epochs = 0;  ///< T
  int64_t layers = 0;  ///< L
  std::vector<std::string> layer_names;
};

/// The schedule of an INQ/ANA config (a float config is a c10::ValueError).
ScheduleSetup schedule_setup(const inner::RunConfig& cfg);

/// The layer x epoch table as aligned text (rows: layers, columns: epochs).
std::string format_table(const sched::ScheduleTable& t, const std::vector<std::string>& names);

/// True when `gnuplot` is on the PATH.
bool gnuplot_available();
/// Runs gnuplot on `script` (written next to `out_png` as <out_png>.gp); throws
/// c10::ValueError when gnuplot is missing or fails (naming `what`).
void run_gnuplot(const std::string& script, const std::string& out_png, const std::string& what);
/// A layer x epoch heatmap of `t` into `out_png` (values written to <out_png>.dat).
void plot_heatmap(const sched::ScheduleTable& t, const std::string& title,
                  const std::string& out_png);

}  // namespace qsched::cli
