#include "experiments/sweep.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "experiments/schedule_tools.h"
#include "inner/io.h"
#include "inner/progress.h"
#include "inner/run.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"
#include "schedules/factory.h"
#include "schedules/registry.h"

namespace qsched::cli {

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

bool is_config_key(const std::string& k) { return k.find('.') != std::string::npos; }

/// Text of a value in a CSV cell: strings bare, everything else as compact JSON.
std::string cell(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string network_name(const json& n) {
  std::string s = n.value("type", std::string("?"));
  for (const char* k : {"hidden", "channels", "blocks", "fc"})
    if (n.contains(k) && n[k].is_array())
      for (const auto& x : n[k]) s += "-" + cell(x);
  if (n.contains("depth")) s += "-" + cell(n["depth"]);
  return s;
}

}  // namespace

SweepGrid SweepGrid::from_json(const json& j, const std::string& what) {
  TORCH_CHECK_VALUE(j.is_object(), what, " must hold a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    TORCH_CHECK_VALUE(it.key() == "family" || it.key() == "fixed" || it.key() == "grid" ||
                          it.key() == "random" || it.key() == "config" || it.key() == "name" ||
                          it.key() == "comment",
                      what, ": unknown key '", it.key(),
                      "' (valid keys: comment, config, family, fixed, grid, name, random)");
  TORCH_CHECK_VALUE(j.contains("grid") != j.contains("random"), what,
                    ": give exactly one of \"grid\" (lists per parameter) and \"random\" "
                    "(ranges + count)");
  SweepGrid g;
  if (j.contains("family")) {
    TORCH_CHECK_VALUE(j["family"].is_string(), what, ".family must be a string");
    g.family = j["family"].get<std::string>();
    sched::registry().entry(g.family, what);  // unknown family -> error listing them
  }
  if (j.contains("fixed")) {
    TORCH_CHECK_VALUE(j["fixed"].is_object() && !j["fixed"].contains("family"), what,
                      ".fixed must be an object of schedule parameters (without \"family\")");
    g.fixed = j["fixed"];
  }
  if (j.contains("config")) {
    TORCH_CHECK_VALUE(j["config"].is_object(), what,
                      ".config must be an object of dotted config paths -> values");
    g.config = j["config"];
  }
  if (j.contains("grid")) {
    const json& grid = j["grid"];
    TORCH_CHECK_VALUE(grid.is_object() && !grid.empty(), what,
                      ".grid must be a non-empty object: parameter -> list of values");
    std::vector<std::vector<json>> values;
    for (auto it = grid.begin(); it != grid.end(); ++it) {  // nlohmann: sorted keys
      TORCH_CHECK_VALUE(it.value().is_array() && !it.value().empty(), what, ".grid.", it.key(),
                        " must be a non-empty list of values");
      g.keys.push_back(it.key());
      values.push_back(it.value().get<std::vector<json>>());
    }
    std::vector<size_t> idx(values.size(), 0);
    while (true) {
      json p = json::object();
      for (size_t k = 0; k < idx.size(); ++k) p[g.keys[k]] = values[k][idx[k]];
      g.points.push_back(p);
      size_t k = idx.size();
      while (k > 0 && ++idx[k - 1] == values[k - 1].size()) idx[--k] = 0;
      if (k == 0) break;
      TORCH_CHECK_VALUE(g.points.size() < 100000, what, ": the grid has more than 100000 points");
    }
  } else {
    const json& r = j["random"];
    TORCH_CHECK_VALUE(
        r.is_object() && r.contains("count") && r["count"].is_number_integer() &&
            r["count"].get<int64_t>() >= 1 && r["count"].get<int64_t>() < 100000 &&
            r.contains("ranges") && r["ranges"].is_object() && !r["ranges"].empty(),
        what,
        ".random must be {\"count\": 1 <= N < 100000, \"seed\": S, \"ranges\": {param: "
        "[lo, hi] or [choice, ...]}}");
    for (auto it = r.begin(); it != r.end(); ++it)
      TORCH_CHECK_VALUE(it.key() == "count" || it.key() == "seed" || it.key() == "ranges", what,
                        ".random: unknown key '", it.key(), "' (valid keys: count, ranges, seed)");
    std::mt19937_64 rng(r.value("seed", uint64_t{0}));
    for (auto it = r["ranges"].begin(); it != r["ranges"].end(); ++it) {
      const json& v = it.value();
      TORCH_CHECK_VALUE(v.is_array() && !v.empty(), what, ".random.ranges.", it.key(),
                        " must be [lo, hi] or a list of choices");
      g.keys.push_back(it.key());
    }
    for (int64_t n = 0; n < r["count"].get<int64_t>(); ++n) {
      json p = json::object();
      for (const auto& k : g.keys) {
        const json& v = r["ranges"][k];
        bool numeric = v.size() == 2 && v[0].is_number() && v[1].is_number();
        if (numeric) {
          TORCH_CHECK_VALUE(v[0].get<double>() <= v[1].get<double>(), what, ".random.ranges.", k,
                            ": lo > hi");
          if (v[0].is_number_integer() && v[1].is_number_integer())
            p[k] = std::uniform_int_distribution<int64_t>(v[0].get<int64_t>(),
                                                          v[1].get<int64_t>())(rng);
          else
            p[k] =
                std::uniform_real_distribution<double>(v[0].get<double>(), v[1].get<double>())(rng);
        } else {
          p[k] = v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
        }
      }
      g.points.push_back(p);
    }
  }
  bool family_swept = std::find(g.keys.begin(), g.keys.end(), "family") != g.keys.end();
  TORCH_CHECK_VALUE(family_swept != !g.family.empty(), what,
                    ": give the family either as \"family\" or as a swept key, not both/neither");
  for (const auto& k : g.keys)
    TORCH_CHECK_VALUE(!g.fixed.contains(k), what, ": '", k, "' is both fixed and swept");
  return g;
}

json SweepGrid::schedule_spec(size_t i) const {
  json s = fixed;
  s["family"] = family;
  for (auto it = points[i].begin(); it != points[i].end(); ++it)
    if (!is_config_key(it.key())) s[it.key()] = it.value();
  return s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::vector<CsvRow> parse_csv(const std::string& text, const std::string& what) {
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string f;
  bool quoted = false, any = false;
  int64_t line = 1, quote_line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        f += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
        TORCH_CHECK_VALUE(i + 1 >= text.size() || text[i + 1] == ',' || text[i + 1] == '\n', what,
                          " line ", line, ": text after a closing quote");
      } else {
        if (c == '\n') ++line;
        f += c;
      }
      continue;
    }
    if (c == '"') {
      TORCH_CHECK_VALUE(f.empty(), what, " line ", line, ": quote inside an unquoted field");
      quoted = any = true;
      quote_line = line;
    } else if (c == ',') {
      row.push_back(f);
      f.clear();
      any = true;
    } else if (c == '\n') {
      row.push_back(f);
      rows.push_back(row);
      row.clear();
      f.clear();
      any = false;
      ++line;
    } else {
      f += c;
      any = true;
    }
  }
  TORCH_CHECK_VALUE(!quoted, what, " line ", quote_line, ": unterminated quoted field");
  TORCH_CHECK_VALUE(!any, what, " line ", line, ": the last line is not terminated (truncated?)");
  return rows;
}

std::vector<std::string> results_header(const SweepGrid& g) {
  std::vector<std::string> h = {"point", "family"};
  for (const auto& k : g.keys)
    if (k != "family") h.push_back(k);
  for (const char* c : {"network", "algorithm", "bits", "seed", "epochs", "status", "test_acc",
                        "test_loss", "val_acc", "val_loss", "seconds", "schedule", "error"})
    h.push_back(c);
  return h;
}

std::pair<std::vector<std::string>, std::vector<CsvRow>> load_results(const std::string& out_dir) {
  const std::string path = out_dir + "/results.csv";
  auto rows = parse_csv(read_whole_file(path), path);
  TORCH_CHECK_VALUE(!rows.empty(), path, ": empty file (no header)");
  auto header = rows.front();
  rows.erase(rows.begin());
  for (size_t i = 0; i < rows.size(); ++i)
    TORCH_CHECK_VALUE(rows[i].size() == header.size(), path, " line ", i + 2, ": ", rows[i].size(),
                      " fields, the header has ", header.size(),
                      " (corrupt file; it is left as is)");
  return {header, rows};
}

namespace {

struct Job {
  size_t point = 0;
  int seed = 0;
};

/// Everything a run needs, prepared before training; `error` set when the point is invalid.
struct Prepared {
  inner::RunConfig cfg;
  json schedule;
  std::string error;
  bool parsed = false;
};

size_t col(const std::vector<std::string>& header, const std::string& name) {
  auto it = std::find(header.begin(), header.end(), name);
  TORCH_INTERNAL_ASSERT(it != header.end(), "results.csv has no column ", name);
  return static_cast<size_t>(it - header.begin());
}

Prepared prepare(const json& base, const SweepGrid& g, size_t p, int seed) {
  Prepared r;
  r.schedule = g.schedule_spec(p);
  try {
    json doc = base;
    for (auto it = g.config.begin(); it != g.config.end(); ++it)
      apply_override(doc, it.key() + "=" + it.value().dump());
    for (auto it = g.points[p].begin(); it != g.points[p].end(); ++it)
      if (is_config_key(it.key())) apply_override(doc, it.key() + "=" + it.value().dump());
    doc["seed"] = seed;
    doc["threads"] = 1;
    std::string alg = doc.value("algorithm", std::string("float"));
    TORCH_CHECK_VALUE(alg == "inq" || alg == "ana", "sweep: the config's algorithm is \"", alg,
                      "\"; a sweep needs an INQ or ANA config");
    doc[alg]["schedule"] = r.schedule;
    r.cfg = inner::parse_run_config(doc);
    r.parsed = true;
    // The schedule itself is checked for the run's T and L when the trainer attaches the
    // algorithm, before any training (building the network here would draw from torch's
    // global generator outside the trainers' serialized initialization).
  } catch (const c10::ValueError& e) {
    r.error = e.what_without_backtrace();
  }
  return r;
}

CsvRow make_row(const SweepGrid& g, size_t p, int seed, const Prepared& pr, const json& summary,
                const std::string& status, const std::string& error) {
  auto num = [&](const char* k) {
    if (!summary.contains(k) || !summary[k].is_number()) return std::string();
    char b[64];
    std::snprintf(b, sizeof b, "%.6f", summary[k].get<double>());
    return std::string(b);
  };
  CsvRow r = {std::to_string(p), cell(pr.schedule.value("family", json(g.family)))};
  for (const auto& k : g.keys)
    if (k != "family") r.push_back(cell(g.points[p][k]));
  const auto& c = pr.cfg;
  std::string bits;
  if (c.algorithm == "inq" && c.algorithm_sections.contains("inq"))
    bits = cell(c.algorithm_sections["inq"].value("bits", json(5)));
  if (c.algorithm == "ana" && c.algorithm_sections.contains("ana")) {
    const json& a = c.algorithm_sections["ana"];
    bits = a.contains("weights") && a["weights"].contains("levels") ? cell(a["weights"]["levels"])
                                                                    : "ternary";
  }
  r.push_back(pr.parsed ? network_name(c.network) : "");
  r.push_back(pr.parsed ? c.algorithm : "");
  r.push_back(pr.parsed ? bits : "");
  r.push_back(std::to_string(seed));
  r.push_back(pr.parsed ? std::to_string(c.train.epochs) : "");
  r.push_back(status);
  for (const char* k : {"test_acc", "test_loss", "val_acc", "val_loss"}) r.push_back(num(k));
  r.push_back(summary.contains("seconds") ? num("seconds") : "");
  r.push_back(pr.schedule.dump());
  r.push_back(error);
  return r;
}

std::string render_csv(const std::vector<std::string>& header,
                       const std::map<std::pair<size_t, int>, CsvRow>& rows) {
  std::string s;
  auto line = [&](const std::vector<std::string>& v) {
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + csv_field(v[i]);
    s += "\n";
  };
  line(header);
  for (const auto& [k, r] : rows) line(r);
  return s;
}

std::string point_text(const json& p) {
  std::string s;
  for (auto it = p.begin(); it != p.end(); ++it)
    s += (s.empty() ? "" : " ") + it.key() + "=" + cell(it.value());
  return s;
}

}  // namespace

int run_sweep(const json& base_config, const SweepGrid& grid, const json& grid_doc,
              const SweepOptions& opt) {
  TORCH_CHECK_VALUE(opt.seeds >= 1, "--seeds = ", opt.seeds, ". Violated constraint: seeds >= 1");
  TORCH_CHECK_VALUE(opt.jobs >= 1, "--jobs = ", opt.jobs, ". Violated constraint: jobs >= 1");
  const std::string dir = opt.out_dir;
  claim_output_dir(dir, "sweep", /*resume=*/false, opt.force);
  make_dirs(dir + "/runs");
  // The definition of the sweep: a rerun must be the same sweep (else point i means another
  // point and resuming would mix results).
  for (const auto& [name, doc] : {std::pair<std::string, json>{"grid.json", grid_doc},
                                  std::pair<std::string, json>{"config.json", base_config}}) {
    const std::string path = dir + "/" + name;
    if (file_exists(path)) {
      json old = read_json_file(path);
      TORCH_CHECK_VALUE(old == doc, "--out ", dir, " holds a sweep with another ", name, " (", path,
                        "); use another --out or the same grid and config");
    } else {
      atomic_write(path, doc.dump(2) + "\n");
    }
  }
  const auto header = results_header(grid);
  const std::string csv_path = dir + "/results.csv";
  std::map<std::pair<size_t, int>, CsvRow> rows;
  if (file_exists(csv_path)) {
    auto [h, old] = load_results(dir);
    TORCH_CHECK_VALUE(h == header, csv_path, ": the header (", join(h, ","),
                      ") is not the one of this grid (", join(header, ","),
                      "); the file is left as is");
    for (size_t i = 0; i < old.size(); ++i) {
      const auto& r = old[i];
      size_t p;
      int seed;
      try {
        p = std::stoul(r[0]);
        seed = std::stoi(r[col(header, "seed")]);
      } catch (const std::exception&) {
        TORCH_CHECK_VALUE(false, csv_path, " line ", i + 2,
                          ": point or seed is not an integer (corrupt file; it is left as is)");
      }
      TORCH_CHECK_VALUE(p < grid.points.size() && seed >= 0, csv_path, " line ", i + 2, ": point ",
                        p, " / seed ", seed,
                        " is not in this grid (corrupt file; it is left as is)");
      for (const auto& k : grid.keys)
        if (k != "family")
          TORCH_CHECK_VALUE(r[col(header, k)] == cell(grid.points[p][k]), csv_path, " line ", i + 2,
                            ": ", k, " = ", r[col(header, k)], " but point ", p,
                            " of the grid has ", cell(grid.points[p][k]),
                            " (corrupt file; it is left as is)");
      const std::string& st = r[col(header, "status")];
      TORCH_CHECK_VALUE(st == "ok" || st == "diverged" || st == "invalid", csv_path, " line ",
                        i + 2, ": status '", st,
                        "' is not ok, diverged or invalid (corrupt file; it is left as is)");
      if (st == "ok") {
        char* end = nullptr;
        const std::string& a = r[col(header, "test_acc")];
        std::strtod(a.c_str(), &end);
        TORCH_CHECK_VALUE(!a.empty() && *end == 0, csv_path, " line ", i + 2, ": test_acc '", a,
                          "' is not a number (corrupt file; it is left as is)");
      }
      rows[{p, seed}] = r;
    }
  }
  std::vector<Job> jobs;
  for (size_t p = 0; p < grid.points.size(); ++p)
    for (int s = 0; s < opt.seeds; ++s)
      if (!rows.count({p, s})) jobs.push_back({p, s});
  // Run directories that exist must be this sweep's (a run of kind "train" or an empty
  // directory): refused before anything runs, never deleted.
  auto run_dir_of = [&](const Job& j) {
    return dir + "/runs/p" + std::to_string(j.point) + "_s" + std::to_string(j.seed);
  };
  for (const Job& j : jobs) {
    const DirOwner o = inspect_output_dir(run_dir_of(j));
    TORCH_CHECK_VALUE(opt.force || o.state == DirOwner::kMissing || o.state == DirOwner::kEmpty ||
                          (o.state == DirOwner::kQsched && o.kind == "train"),
                      "sweep run directory '", run_dir_of(j), "' ",
                      o.state == DirOwner::kQsched
                          ? "is a qsched " + o.kind + " directory, not a sweep run"
                          : "holds '" + o.example + "', which qsched did not write",
                      "; remove it yourself or pass --force (which leaves other files alone)");
  }
  const size_t total = grid.points.size() * opt.seeds;
  // The plan is printed also with --quiet: one line that says what a rerun will resume.
  std::fprintf(stderr,
               "sweep %s: %zu points x %d seeds = %zu runs, %zu finished, %zu to run, %d jobs\n",
               dir.c_str(), grid.points.size(), opt.seeds, total, total - jobs.size(), jobs.size(),
               opt.jobs);

  install_interrupt_handlers();
  std::mutex mu;
  std::atomic<size_t> next{0};
  size_t done = 0;
  Progress bar("sweep", static_cast<int64_t>(jobs.size()), opt.progress);
  std::string fatal;
  bool fatal_bad_input = false;  ///< the first fatal error was a corrupt run file (exit 2)
  bool fatal_io = false;         ///< the first fatal error was an IoError (exit code 4, not 1)
  auto record = [&](const Job& j, CsvRow row, const std::string& msg) {
    std::lock_guard<std::mutex> lock(mu);
    rows[{j.point, j.seed}] = std::move(row);
    atomic_write(csv_path, render_csv(header, rows));
    ++done;
    bar.line(msg);
    bar.update(static_cast<int64_t>(done),
               std::to_string(done) + "/" + std::to_string(jobs.size()));
  };
  auto worker = [&] {
    while (!interrupted()) {
      size_t i = next++;
      if (i >= jobs.size()) return;
      const Job j = jobs[i];
      std::string tag = "point " + std::to_string(j.point) + " (" +
                        point_text(grid.points[j.point]) + ") seed " + std::to_string(j.seed);
      Prepared pr = prepare(base_config, grid, j.point, j.seed);
      if (!pr.error.empty()) {
        record(j, make_row(grid, j.point, j.seed, pr, json::object(), "invalid", pr.error),
               tag + ": invalid, skipped: " + pr.error);
        continue;
      }
      const std::string run_dir = run_dir_of(j);
      // A run with files of its own (a summary, a checkpoint) is read back, not started: a
      // bad file there is a corrupt artifact, which stops the sweep (exit 2) instead of
      // being recorded as an invalid point.
      const bool finished = file_exists(run_dir + "/summary.json");
      const bool from_artifact = finished || file_exists(run_dir + "/checkpoint.pt");
      try {
        json summary;
        inner::Termination term;
        if (finished) {
          summary = inner::read_summary(run_dir + "/summary.json");
          term = summary.value("termination", std::string("completed")) == "diverged"
                     ? inner::Termination::kDiverged
                     : inner::Termination::kCompleted;
        } else {
          inner::RunOptions ro;
          ro.out_dir = run_dir;
          ro.quiet = true;
          ro.progress = false;
          ro.resume = file_exists(run_dir + "/checkpoint.pt");
          ro.force = opt.force;
          // A run killed before its first checkpoint starts again in its own directory.
          auto outcome = inner::run_training(pr.cfg, ro);
          term = outcome.termination;
          summary = outcome.summary;
        }
        if (term == inner::Termination::kInterrupted) return;
        std::string status = term == inner::Termination::kDiverged ? "diverged" : "ok";
        char msg[128];
        std::snprintf(msg, sizeof msg, ": %s, test acc %.4f (%.0f s)", status.c_str(),
                      summary.value("test_acc", 0.0), summary.value("seconds", 0.0));
        record(j, make_row(grid, j.point, j.seed, pr, summary, status, ""), tag + msg);
      } catch (const c10::ValueError& e) {
        if (from_artifact) {
          std::lock_guard<std::mutex> lock(mu);
          if (fatal.empty()) {
            fatal = tag + ": " + std::string(e.what_without_backtrace()) + " (remove " + run_dir +
                    " to run it again)";
            fatal_bad_input = true;
          }
          set_interrupted(true);
          return;
        }
        // Bad input only detectable when training starts (e.g. an init checkpoint of
        // another architecture at this point): report, skip, continue.
        std::string m = e.what_without_backtrace();
        record(j, make_row(grid, j.point, j.seed, pr, json::object(), "invalid", m),
               tag + ": invalid, skipped: " + m);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        if (fatal.empty()) {
          fatal = tag + ": " + one_line(e);
          fatal_io = dynamic_cast<const IoError*>(&e) != nullptr;
        }
        set_interrupted(true);  // stop the other workers at their next step
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < std::min<int>(opt.jobs, std::max<size_t>(jobs.size(), 1)); ++k)
    threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  bar.finish();
  if (fatal_io) throw IoError("sweep stopped: " + fatal);
  TORCH_CHECK_VALUE(!fatal_bad_input, "sweep stopped: ", fatal);
  TORCH_CHECK(fatal.empty(), "sweep stopped: ", fatal);
  if (interrupted()) {
    std::fprintf(stderr,
                 "sweep interrupted: %zu of %zu runs recorded in %s; rerun the same command to "
                 "resume\n",
                 rows.size(), total, csv_path.c_str());
    return kExitInterrupted;
  }
  size_t invalid = 0;
  for (const auto& [k, r] : rows) invalid += r[col(header, "status")] == "invalid";
  std::fprintf(stderr, "sweep %s: %zu runs recorded (%zu invalid) in %s (%s)\n", dir.c_str(),
               rows.size(), invalid, csv_path.c_str(), format_duration(bar.elapsed()).c_str());
  return 0;
}

}  // namespace qsched::cli
