// report.md and plots of a sweep directory (experiments/sweep.h).
//
// Statistics: for a group of n runs (the seeds of one point, or every run at one level of a
// parameter) the mean test accuracy and its 95% confidence interval mean ± t_{0.975, n-1} s /
// sqrt(n) (Student t, sample std s); n = 1 has no interval. The main effect of a parameter is
// the spread (max - min) of its level means (a main-effects / one-factor sensitivity table).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "experiments/schedule_tools.h"
#include "experiments/sweep.h"
#include "inner/io.h"
#include "inner/progress.h"
#include "inner/run.h"

namespace qsched::cli {

double t975(int64_t df) {
  static const double t[] = {0,     12.706, 4.303, 3.182, 2.776, 2.571, 2.447,
                             2.365, 2.306,  2.262, 2.228, 2.201, 2.179, 2.160,
                             2.145, 2.131,  2.120, 2.110, 2.101, 2.093, 2.086};
  if (df <= 0) return NAN;
  if (df <= 20) return t[df];
  return df <= 30 ? 2.05 : df <= 60 ? 2.01 : 1.96;
}

MeanCi mean_ci(const std::vector<double>& v) {
  MeanCi s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x / v.size();
  if (v.size() > 1) {
    double var = 0;
    for (double x : v) var += (x - s.mean) * (x - s.mean) / (v.size() - 1);
    s.ci = t975(s.n - 1) * std::sqrt(var / s.n);
  }
  return s;
}

namespace {

using Stat = MeanCi;
Stat stat(const std::vector<double>& v) { return mean_ci(v); }

std::string pct(const Stat& s) {
  char b[64];
  if (std::isnan(s.ci))
    std::snprintf(b, sizeof b, "%.2f%%", 100 * s.mean);
  else
    std::snprintf(b, sizeof b, "%.2f%% ± %.2f", 100 * s.mean, 100 * s.ci);
  return b;
}

bool is_number(const std::string& s, double* out = nullptr) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end != 0) return false;
  if (out) *out = v;
  return true;
}

std::string safe(std::string s) {
  for (auto& c : s)
    if (c == '\'' || c == '"') c = ' ';
  return s;
}

}  // namespace

void write_sweep_report(const std::string& out_dir, bool require_plots) {
  const auto loaded = load_results(out_dir);
  const auto& header = loaded.first;
  const auto& rows = loaded.second;
  auto col = [&](const std::string& name) -> size_t {
    auto it = std::find(header.begin(), header.end(), name);
    TORCH_CHECK_VALUE(it != header.end(), out_dir, "/results.csv has no column '", name, "'");
    return static_cast<size_t>(it - header.begin());
  };
  const size_t c_point = col("point"), c_status = col("status"), c_acc = col("test_acc"),
               c_val = col("val_acc"), c_sec = col("seconds"), c_net = col("network"),
               c_err = col("error"), c_fam = col("family"), c_sched = col("schedule"),
               c_seed = col("seed"), c_epochs = col("epochs");
  // Every row is checked before use: a hand-edited results.csv is named, never half-plotted.
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string at = out_dir + "/results.csv row " + std::to_string(i + 2) + ": ";
    TORCH_CHECK_VALUE(rows[i].size() == header.size(), at, rows[i].size(),
                      " columns, the header has ", header.size());
    const std::string& p = rows[i][c_point];
    TORCH_CHECK_VALUE(!p.empty() && p.size() < 10 && std::all_of(p.begin(), p.end(), ::isdigit), at,
                      "point = '", p, "' is not a point number");
    const std::string& st = rows[i][c_status];
    TORCH_CHECK_VALUE(st == "ok" || st == "diverged" || st == "invalid", at, "status = '", st,
                      "', expected ok, diverged or invalid");
    if (st == "invalid") continue;
    for (size_t c : {c_acc, c_val, c_sec}) {
      double x = 0;
      TORCH_CHECK_VALUE(is_number(rows[i][c], &x) || (st == "diverged" && rows[i][c].empty()), at,
                        header[c], " = '", rows[i][c], "' is not a number");
    }
  }
  // Swept keys: the columns between "family" and "network" (and the family when it varies).
  std::vector<std::string> keys(header.begin() + c_fam + 1, header.begin() + c_net);
  std::set<std::string> families;
  for (const auto& r : rows) families.insert(r[c_fam]);
  if (families.size() > 1) keys.insert(keys.begin(), "family");

  std::map<size_t, std::vector<size_t>> by_point;  // ok/diverged rows per point
  std::map<size_t, std::string> invalid;
  for (size_t i = 0; i < rows.size(); ++i) {
    size_t p = std::stoul(rows[i][c_point]);
    if (rows[i][c_status] == "invalid")
      invalid[p] = rows[i][c_err];
    else
      by_point[p].push_back(i);
  }
  auto acc_of = [&](const std::vector<size_t>& idx, size_t c) {
    std::vector<double> v;
    for (size_t i : idx) {
      double x;
      if (is_number(rows[i][c], &x)) v.push_back(x);
    }
    return v;
  };
  struct PointStat {
    size_t point;
    Stat test, val;
    double seconds;
  };
  std::vector<PointStat> points;
  for (const auto& [p, idx] : by_point) {
    auto sec = stat(acc_of(idx, c_sec));
    points.push_back({p, stat(acc_of(idx, c_acc)), stat(acc_of(idx, c_val)), sec.mean});
  }
  std::sort(points.begin(), points.end(),
            [](const PointStat& a, const PointStat& b) { return a.test.mean > b.test.mean; });
  auto row_of = [&](size_t p) -> const CsvRow& { return rows[by_point.at(p).front()]; };
  auto params_of = [&](size_t p) {
    std::string s;
    for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k + "=" + row_of(p)[col(k)];
    return s;
  };

  const bool plots = gnuplot_available();
  TORCH_CHECK_VALUE(plots || !require_plots,
                    "sweep-report: gnuplot is not installed or not on "
                    "the PATH (Debian: apt-get install gnuplot-nox)");
  std::ostringstream md;
  md << "# Sweep report: " << out_dir << "\n\n";
  double total_sec = 0;
  for (const auto& r : rows) {
    double x;
    if (is_number(r[c_sec], &x)) total_sec += x;
  }
  std::set<std::string> nets, seeds;
  for (const auto& r : rows) {
    if (!r[c_net].empty()) nets.insert(r[c_net]);
    seeds.insert(r[c_seed]);
  }
  md << "- runs: " << rows.size() << " (" << points.size() << " valid points, " << invalid.size()
     << " invalid points, " << seeds.size() << " seeds); training time summed over runs "
     << format_duration(total_sec) << "\n";
  md << "- algorithm: " << (rows.empty() ? "" : rows[0][col("algorithm")]) << ", network(s): ";
  for (const auto& n : nets) md << n << " ";
  md << ", bits: " << (rows.empty() ? "" : rows[0][col("bits")]) << "\n";
  if (file_exists(out_dir + "/grid.json"))
    md << "- grid: `" << read_json_file(out_dir + "/grid.json").dump() << "`\n";
  md << "- accuracy: test accuracy of the hardened (fully quantized) network; ± is the 95% "
        "confidence interval (Student t over the runs of the group)\n\n";

  if (points.empty()) {
    md << "No valid run finished yet.\n";
  } else {
    md << "## Points, best first\n\n| point | ";
    for (const auto& k : keys) md << k << " | ";
    md << "runs | test acc | val acc | seconds/run |\n|---|";
    for (size_t k = 0; k < keys.size(); ++k) md << "---|";
    md << "---|---|---|---|\n";
    for (const auto& ps : points) {
      md << "| " << ps.point << " | ";
      for (const auto& k : keys) md << row_of(ps.point)[col(k)] << " | ";
      char sec[32];
      std::snprintf(sec, sizeof sec, "%.1f", ps.seconds);
      md << ps.test.n << " | " << pct(ps.test) << " | " << pct(ps.val) << " | " << sec << " |\n";
    }
    md << "\n";

    md << "## Main effects (mean test accuracy per level, over every run at that level)\n\n";
    std::vector<std::pair<double, std::string>> effects;
    for (const auto& k : keys) {
      std::map<std::string, std::vector<double>> lv;
      for (const auto& [p, idx] : by_point)
        for (size_t i : idx) {
          double x;
          if (is_number(rows[i][c_acc], &x)) lv[rows[i][col(k)]].push_back(x);
        }
      std::ostringstream t;
      t << "### " << k << "\n\n| level | runs | test acc |\n|---|---|---|\n";
      double lo = 1, hi = 0;
      std::vector<std::pair<std::string, Stat>> levels;
      for (const auto& [l, v] : lv) levels.push_back({l, stat(v)});
      std::sort(levels.begin(), levels.end(), [](const auto& a, const auto& b) {
        double x, y;
        if (is_number(a.first, &x) && is_number(b.first, &y)) return x < y;
        return a.first < b.first;
      });
      for (const auto& [l, s] : levels) {
        t << "| " << l << " | " << s.n << " | " << pct(s) << " |\n";
        lo = std::min(lo, s.mean);
        hi = std::max(hi, s.mean);
      }
      effects.push_back({hi - lo, t.str()});
      if (plots) {
        // Accuracy vs the parameter: every run (points) and the level means (line).
        std::ostringstream dat;
        bool numeric = true;
        for (const auto& [l, s] : levels) numeric = numeric && is_number(l);
        for (size_t li = 0; li < levels.size(); ++li)
          for (double x : lv[levels[li].first])
            dat << (numeric ? levels[li].first : std::to_string(li)) << " " << 100 * x << " "
                << 100 * levels[li].second.mean << "\n";
        std::string png = out_dir + "/acc_vs_" + safe(k) + ".png";
        atomic_write(png + ".dat", dat.str());
        std::ostringstream gp;
        gp << "set title 'test accuracy vs " << safe(k) << "'\nset xlabel '" << safe(k)
           << "'\nset ylabel 'test accuracy (%)'\nset grid\n";
        if (!numeric) {
          gp << "set xtics (";
          for (size_t li = 0; li < levels.size(); ++li)
            gp << (li ? ", " : "") << "'" << safe(levels[li].first) << "' " << li;
          gp << ")\nset xrange [-0.5:" << levels.size() - 0.5 << "]\n";
        } else {
          gp << "set offsets graph 0.05, graph 0.05, 0, 0\n";
        }
        gp << "plot '" << png << ".dat' using 1:2 with points pt 7 ps 0.6 title 'runs', '' "
           << "using 1:3 smooth unique with linespoints lw 2 title 'level mean'\n";
        run_gnuplot(gp.str(), png, "sweep-report");
      }
    }
    std::stable_sort(effects.begin(), effects.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    md << "| parameter | spread of level means (points) |\n|---|---|\n";
    for (size_t e = 0; e < effects.size(); ++e) {
      auto name = effects[e].second.substr(4, effects[e].second.find('\n') - 4);
      char b[32];
      std::snprintf(b, sizeof b, "%.2f", 100 * effects[e].first);
      md << "| " << name << " | " << b << " |\n";
    }
    md << "\n";
    for (const auto& e : effects) md << e.second << "\n";
    if (plots) {
      md << "Accuracy against each parameter: ";
      for (const auto& k : keys) md << "![" << k << "](acc_vs_" << safe(k) << ".png) ";
      md << "\n\n";
    }

    md << "## Best and worst schedules\n\n";
    for (const auto& [label, ps] : {std::pair<std::string, PointStat>{"best", points.front()},
                                    std::pair<std::string, PointStat>{"worst", points.back()}}) {
      md << "### " << label << ": point " << ps.point << " (" << params_of(ps.point)
         << "), test acc " << pct(ps.test) << "\n\n";
      md << "schedule: `" << row_of(ps.point)[c_sched] << "`\n\n";
      std::string run =
          out_dir + "/runs/p" + std::to_string(ps.point) + "_s" + row_of(ps.point)[c_seed];
      if (!file_exists(run + "/schedule.json")) continue;
      auto t = sched::ScheduleTable::from_json(read_json_file(run + "/schedule.json"),
                                               run + "/schedule.json");
      std::vector<std::string> names;
      for (int64_t l = 0; l < t.layers(); ++l) names.push_back("layer" + std::to_string(l));
      md << "```\n" << format_table(t, names) << "```\n\n";
      if (plots) {
        std::string png = out_dir + "/" + label + "_schedule.png";
        plot_heatmap(t, label + " schedule: point " + std::to_string(ps.point), png);
        md << "![" << label << "](" << label << "_schedule.png)\n\n";
      }
    }

    md << "## Accuracy against epochs\n\n";
    std::map<int64_t, std::vector<double>> by_epochs;  // numeric order
    for (const auto& [p, idx] : by_point)
      for (size_t i : idx) {
        double x, e;
        if (is_number(rows[i][c_acc], &x) && is_number(rows[i][c_epochs], &e))
          by_epochs[static_cast<int64_t>(e)].push_back(x);
      }
    md << "| train epochs | runs | test acc |\n|---|---|---|\n";
    for (const auto& [e, v] : by_epochs)
      md << "| " << e << " | " << v.size() << " | " << pct(stat(v)) << " |\n";
    md << "\n";
    if (plots) {
      // Validation accuracy per training epoch of the best and worst point (seed of the
      // table row), and the final test accuracy per epoch budget.
      std::ostringstream gp;
      gp << "set title 'validation accuracy during training'\nset xlabel 'epoch'\n"
         << "set ylabel 'val accuracy (%)'\nset grid\nset key bottom right\nplot ";
      int n = 0;
      for (const auto& [label, p] :
           {std::pair<std::string, size_t>{"best", points.front().point},
            std::pair<std::string, size_t>{"worst", points.back().point}}) {
        std::string run = out_dir + "/runs/p" + std::to_string(p) + "_s" + row_of(p)[c_seed];
        if (!file_exists(run + "/metrics.jsonl")) continue;
        std::ostringstream dat;
        for (const auto& p : inner::read_val_curve(run + "/metrics.jsonl"))
          dat << p.epoch << " " << 100 * p.val_acc << "\n";
        std::string f = out_dir + "/curve_" + label + ".dat";
        atomic_write(f, dat.str());
        gp << (n++ ? ", " : "") << "'" << f << "' using 1:2 with linespoints title '" << label
           << " (point " << p << ")'";
      }
      if (n > 0) {
        run_gnuplot(gp.str() + "\n", out_dir + "/acc_vs_epoch.png", "sweep-report");
        md << "![accuracy vs epoch](acc_vs_epoch.png)\n\n";
      }
    }
  }
  if (!invalid.empty()) {
    md << "## Invalid points (skipped)\n\n";
    for (const auto& [p, e] : invalid) md << "- point " << p << ": " << e << "\n";
    md << "\n";
  }
  if (!plots)
    md << "(plots skipped: gnuplot is not installed; `apt-get install gnuplot-nox`, then "
          "`qsched sweep-report --out "
       << out_dir << "`)\n";
  atomic_write(out_dir + "/report.md", md.str());
  if (!plots)
    std::fprintf(stderr, "warning: gnuplot not found: %s/report.md has no plots\n",
                 out_dir.c_str());
}

}  // namespace qsched::cli
