// `qsched compare`: learned against hand-coded schedules, paired over seeds.
//
// Compare file (JSON, strict keys):
//   {"config": "experiments/configs/fmnist_mlp_inq2.json",   // base run config (INQ or ANA)
//    "targets": [{"name": "mlp96", "set": {"network": {"type": "mlp", "hidden": [96]}}}, ...],
//                                    // each target = the base config with dotted-path overrides
//    "schedules": [{"name": "learned", "controller": "runs/meta_inq", "base": "meta"},
//                  {"name": "inq_paper", "schedule": {"family": "inq_paper", "bits": 2, ...}},
//                  {"name": "best_sweep", "schedule": {...}}],
//    "reference": "best_sweep",      // the baseline the paired differences are taken against
//    "seeds": 5}                     // seeds 0..N-1: same seed = same init and data order
//                                    // for every schedule (paired design)
// Every (target, schedule, seed) is one run directory <out>/runs/<target>/<schedule>/s<seed>
// (qsched train / qsched apply layout, with their ownership markers; a learned run records its
// controller's fingerprint and base in apply.json); finished runs (summary.json present) are
// skipped, so a killed compare resumes; J runs in parallel threads with one intra-op thread each.
// <out> carries the marker of kind "compare" (inner/run_dir.h) and compare.json, the compare
// file it was made with: a rerun must give the same compare file, and the same controllers
// (fingerprints), else it is refused before anything runs.
// <out>/results.csv (rewritten atomically) and <out>/report.md: per target, test accuracy of the
// hardened network mean ± std per schedule, the paired difference against the reference with a
// 95% t-interval, epochs and wall time; PNG plots (gnuplot): validation accuracy per epoch for
// every schedule and the layer x epoch heatmaps of seed 0's schedules.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "experiments/schedule_tools.h"
#include "experiments/sweep.h"
#include "inner/base/json_reader.h"
#include "inner/io.h"
#include "inner/run.h"
#include "inner/run_dir.h"
#include "inner/runtime.h"
#include "meta/apply.h"
#include "schedules/factory.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace qsched::cli {

namespace {

struct Entry {
  std::string name;
  std::string controller, base = "meta";  ///< learned
  json schedule;                          ///< hand-coded spec
};

struct CompareSpec {
  json config;
  std::vector<std::pair<std::string, json>> targets;  ///< name, overrides
  std::vector<Entry> schedules;
  std::string reference;
  int seeds = 3;
};

void check_name(const std::string& n, const std::string& what) {
  TORCH_CHECK_VALUE(
      !n.empty() && n.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                                        "OPQRSTUVWXYZ0123456789_-.") == std::string::npos,
      what, " = \"", n, "\". Violated constraint: a non-empty name of [A-Za-z0-9_.-]");
}

CompareSpec parse_spec(const json& j, const std::string& what) {
  JsonReader r(j, what);
  CompareSpec c;
  c.config = read_json_file(r.get<std::string>("config", ""));
  c.seeds = r.get<int>("seeds", 3);
  TORCH_CHECK_VALUE(c.seeds >= 2 && c.seeds <= 10000, what, ".seeds = ", c.seeds,
                    ". Violated constraint: 2 <= seeds <= 10000 (paired intervals need two)");
  c.reference = r.get<std::string>("reference", "");
  json targets = r.get<json>("targets", json::array({{{"name", "config"}}}));
  json schedules = r.get<json>("schedules", json::array());
  r.finish();
  TORCH_CHECK_VALUE(targets.is_array() && !targets.empty(), what,
                    ".targets must be a non-empty array");
  for (size_t i = 0; i < targets.size(); ++i) {
    std::string w = what + ".targets[" + std::to_string(i) + "]";
    JsonReader t(targets[i], w);
    std::string name = t.get<std::string>("name", "");
    json set = t.get<json>("set", json::object());
    t.finish();
    check_name(name, w + ".name");
    for (const auto& other : c.targets)
      TORCH_CHECK_VALUE(other.first != name, w, ".name = \"", name,
                        "\". Violated constraint: target names are unique (runs/<target>/...)");
    TORCH_CHECK_VALUE(set.is_object(), w, ".set must be an object of dotted paths");
    c.targets.emplace_back(name, set);
  }
  TORCH_CHECK_VALUE(schedules.is_array() && schedules.size() >= 2, what,
                    ".schedules must list at least two schedules");
  bool ref = false;
  for (size_t i = 0; i < schedules.size(); ++i) {
    std::string w = what + ".schedules[" + std::to_string(i) + "]";
    JsonReader s(schedules[i], w);
    Entry e;
    e.name = s.get<std::string>("name", "");
    e.controller = s.get<std::string>("controller", "");
    e.base = s.get<std::string>("base", "meta");
    e.schedule = s.get<json>("schedule", json());
    s.finish();
    check_name(e.name, w + ".name");
    for (const auto& other : c.schedules)
      TORCH_CHECK_VALUE(other.name != e.name, w, ".name = \"", e.name,
                        "\". Violated constraint: schedule names are unique "
                        "(runs/<target>/<schedule>/...)");
    TORCH_CHECK_VALUE(e.controller.empty() != e.schedule.is_null(), w,
                      ": give exactly one of \"controller\" and \"schedule\"");
    ref |= e.name == c.reference;
    c.schedules.push_back(e);
  }
  TORCH_CHECK_VALUE(ref, what, ".reference = \"", c.reference,
                    "\". Violated constraint: the name of one of the schedules");
  return c;
}

void set_path(json& j, const std::string& path, const json& v) {
  json* node = &j;
  size_t pos = 0, dot;
  while ((dot = path.find('.', pos)) != std::string::npos) {
    node = &(*node)[path.substr(pos, dot - pos)];
    pos = dot + 1;
  }
  (*node)[path.substr(pos)] = v;
}

/// The run config of (target, schedule, seed).
inner::RunConfig run_config(const CompareSpec& c, size_t t, const Entry& e, int seed) {
  json j = c.config;
  for (auto it = c.targets[t].second.begin(); it != c.targets[t].second.end(); ++it)
    set_path(j, it.key(), it.value());
  j["seed"] = seed;
  j["threads"] = 1;
  std::string alg = j.value("algorithm", std::string("float"));
  TORCH_CHECK_VALUE(alg == "inq" || alg == "ana", "compare: the config's algorithm is \"", alg,
                    "\". Violated constraint: \"inq\" or \"ana\"");
  if (!e.schedule.is_null()) j[alg]["schedule"] = e.schedule;
  return inner::parse_run_config(j);
}

/// Paired difference a - b over seeds: mean and 95% t-interval.
struct Paired {
  double mean = 0, lo = 0, hi = 0;
  const char* verdict() const {
    return lo > 0 ? "better" : hi < 0 ? "**worse**" : "(no significant difference)";
  }
};
Paired paired(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) d.push_back(a[k] - b[k]);
  MeanCi m = mean_ci(d);
  return {m.mean, m.mean - m.ci, m.mean + m.ci};
}

double mean_of(const std::vector<double>& v) { return mean_ci(v).mean; }

}  // namespace

int cmd_compare(const std::vector<std::string>& args) {
  std::string spec_path, out;
  int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool quiet = false, force = false;
  po::options_description desc("qsched compare flags");
  desc.add_options()("help,h", "show this help")("config", po::value(&spec_path),
                                                 "compare file (JSON; see experiments/compare/)")(
      "out", po::value(&out), "output directory (rerun the same command to resume)")(
      "jobs", ranged(&jobs, "jobs", 1, 256),
      "runs in parallel (one intra-op thread each; default: cores)")(
      "quiet", po::bool_switch(&quiet), "no progress line")(
      "force", po::bool_switch(&force),
      "use an --out that is not a qsched compare directory (files qsched writes are "
      "overwritten, others left alone, nothing is deleted)");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched compare --config COMPARE.json --out DIR [--jobs J]\n\n"
                   "Runs every target x schedule x seed (a learned controller and hand-coded\n"
                   "baselines; same seed = same init and data order), then writes DIR/results.csv\n"
                   "and DIR/report.md: test accuracy of the hardened networks, paired differences\n"
                   "against the reference schedule with 95% intervals, curves and heatmaps.\n"
                   "A rerun with the same compare file and controllers continues DIR; another\n"
                   "compare file or a changed controller is refused."))
    return kExitOk;
  TORCH_CHECK_VALUE(!spec_path.empty(), "missing --config COMPARE.json");
  TORCH_CHECK_VALUE(!out.empty(), "missing --out DIR");
  CompareSpec c = parse_spec(read_json_file(spec_path), "compare '" + spec_path + "'");

  // Validate everything before the first run: configs, schedules, controllers.
  std::map<std::string, meta::SavedController> controllers;
  for (const auto& e : c.schedules)
    if (!e.controller.empty()) controllers.emplace(e.name, meta::load_controller(e.controller));
  for (size_t t = 0; t < c.targets.size(); ++t)
    for (const auto& e : c.schedules) {
      auto cfg = run_config(c, t, e, 0);
      if (!e.controller.empty()) {
        meta::controller_algorithm(controllers.at(e.name), e.base, cfg);
        continue;
      }
      // A hand-coded schedule can be valid for one network and not another (a stagger needs
      // (L - 1) delta epochs): materialize it for this target's layers now, not mid-compare.
      const ScheduleSetup setup = schedule_setup(cfg);
      const std::string what = "compare target '" + c.targets[t].first + "' (" +
                               std::to_string(setup.layers) + " layers, " +
                               std::to_string(setup.epochs) + " quantization epochs): schedule '" +
                               e.name + "'";
      sched::materialize(*sched::make_schedule(setup.spec, setup.quantity, what), setup.epochs,
                         setup.layers, what);
    }

  struct Job {
    size_t t, e;
    int seed;
    std::string dir;
  };
  std::vector<Job> todo;
  for (size_t t = 0; t < c.targets.size(); ++t)
    for (size_t e = 0; e < c.schedules.size(); ++e)
      for (int s = 0; s < c.seeds; ++s) {
        std::string dir = out + "/runs/" + c.targets[t].first + "/" + c.schedules[e].name + "/s" +
                          std::to_string(s);
        todo.push_back({t, e, s, dir});
      }
  // The output directory and every existing run directory in it must be this compare's.
  const json spec_doc = read_json_file(spec_path);
  std::map<std::string, std::string> fingerprints;  // learned entry -> controller fingerprint
  for (const auto& [name, saved] : controllers)
    fingerprints[name] = meta::controller_fingerprint(saved);
  if (is_own_dir(out, "compare") && file_exists(out + "/compare.json"))
    TORCH_CHECK_VALUE(read_json_file(out + "/compare.json") == spec_doc, "--out ", out,
                      " holds a compare made with another compare file (", out,
                      "/compare.json); use another --out or the same compare file");
  for (const Job& j : todo) {
    const Entry& e = c.schedules[j.e];
    const std::string kind = e.controller.empty() ? "train" : "apply";
    const DirOwner o = inspect_output_dir(j.dir);
    TORCH_CHECK_VALUE(force || o.state == DirOwner::kMissing || o.state == DirOwner::kEmpty ||
                          (o.state == DirOwner::kQsched && o.kind == kind),
                      "compare run directory '", j.dir, "' ",
                      o.state == DirOwner::kQsched
                          ? "is a qsched " + o.kind + " directory, not a " + kind + " run"
                          : "holds '" + o.example + "', which qsched did not write",
                      "; use another --out, or pass --force (which leaves other files alone)");
    if (!e.controller.empty() && file_exists(j.dir + "/apply.json")) {
      const meta::ApplyRecord rec = meta::ApplyRecord::load(j.dir);
      TORCH_CHECK_VALUE(rec.fingerprint == fingerprints.at(e.name) && rec.base == e.base,
                        "compare run '", j.dir, "' was made with controller fingerprint ",
                        rec.fingerprint, " and base \"", rec.base, "\"; schedule '", e.name,
                        "' now has ", fingerprints.at(e.name), " and \"", e.base,
                        "\" (the controller changed?); use another --out");
    }
  }
  claim_output_dir(out, "compare", /*resume=*/false, force);
  atomic_write(out + "/compare.json", spec_doc.dump(2) + "\n");
  set_threads(1);
  std::atomic<size_t> next{0}, done{0};
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  std::mutex mu;
  std::string first_error;
  bool bad_input = false;  ///< the first error was a c10::ValueError (exit 2, not 1)
  bool io_error = false;   ///< the first error was an IoError (exit 4, not 1)
  auto worker = [&] {
    for (;;) {
      size_t i = next++;
      if (i >= todo.size() || interrupted()) return;
      const Job& j = todo[i];
      try {
        if (!file_exists(j.dir + "/summary.json")) {
          const Entry& e = c.schedules[j.e];
          auto cfg = run_config(c, j.t, e, j.seed);
          inner::RunOptions ro;
          ro.out_dir = j.dir;
          ro.quiet = true;
          ro.progress = false;
          ro.resume = file_exists(j.dir + "/checkpoint.pt");
          ro.force = force;
          ro.kind = e.controller.empty() ? "train" : "apply";
          if (ro.resume) cfg = inner::load_run_config(j.dir);
          if (!e.controller.empty()) {
            ro.make_algorithm = meta::controller_algorithm(controllers.at(e.name), e.base, cfg);
            claim_output_dir(j.dir, ro.kind, ro.resume, force);
            if (!ro.resume)
              meta::ApplyRecord{e.controller, fingerprints.at(e.name), e.base}.save(j.dir);
          }
          inner::run_training(cfg, ro);
        }
      } catch (const std::exception& ex) {
        std::lock_guard<std::mutex> l(mu);
        if (first_error.empty()) {
          const auto* ce = dynamic_cast<const c10::Error*>(&ex);
          first_error = j.dir + ": " + (ce ? ce->what_without_backtrace() : ex.what());
          bad_input = dynamic_cast<const c10::ValueError*>(&ex) != nullptr;
          io_error = dynamic_cast<const IoError*>(&ex) != nullptr;
        }
        return;
      }
      size_t d = ++done;
      if (!quiet) {
        // A terminal gets one updating line; a log file a line per tenth of the runs.
        std::lock_guard<std::mutex> l(mu);
        const size_t every = std::max<size_t>(1, todo.size() / 10);
        if (tty)
          std::fprintf(stderr, "\rcompare: %zu/%zu runs", d, todo.size());
        else if (d % every == 0 || d == todo.size())
          std::fprintf(stderr, "compare: %zu/%zu runs\n", d, todo.size());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int k = 0; k < jobs; ++k) pool.emplace_back(worker);
  for (auto& th : pool) th.join();
  if (!quiet && tty) std::fprintf(stderr, "\n");
  TORCH_CHECK_VALUE(!bad_input, "compare run failed: ", first_error);
  if (io_error) throw IoError("compare run failed: " + first_error);
  TORCH_CHECK(first_error.empty(), "compare run failed: ", first_error);
  if (interrupted()) {
    std::fprintf(stderr, "compare: interrupted; rerun the same command to resume\n");
    return kExitInterrupted;
  }

  // results.csv
  std::ostringstream csv;
  csv << "target,schedule,seed,test_acc,test_loss,val_acc,val_loss,epochs,seconds,termination\n";
  std::map<std::string, std::map<std::string, std::vector<double>>> acc;  // target -> sched
  std::map<std::string, std::map<std::string, double>> secs;
  int64_t epochs = 0;
  for (const auto& j : todo) {
    json s = inner::read_summary(j.dir + "/summary.json");
    const std::string& tn = c.targets[j.t].first;
    const std::string& sn = c.schedules[j.e].name;
    csv << csv_field(tn) << "," << csv_field(sn) << "," << j.seed << "," << s.value("test_acc", NAN)
        << "," << s.value("test_loss", NAN) << "," << s.value("val_acc", NAN) << ","
        << s.value("val_loss", NAN) << "," << s.value("epochs", 0) << "," << s.value("seconds", 0.0)
        << "," << s.value("termination", std::string()) << "\n";
    acc[tn][sn].push_back(s.value("test_acc", NAN));
    secs[tn][sn] += s.value("seconds", 0.0);
    epochs = s.value("epochs", int64_t(0));
  }
  atomic_write(out + "/results.csv", csv.str());

  // report.md
  const bool plots = gnuplot_available();
  std::ostringstream md;
  md << "# qsched compare\n\nCompare file: `" << spec_path << "`; " << c.seeds
     << " seeds (paired: same init and data order for every schedule); " << epochs
     << " epochs per run; reference: **" << c.reference
     << "**. Test accuracy of the hardened network; difference = schedule - reference per seed, "
        "mean with a 95% t-interval.\n\n";
  // The question a user asks first: does the learned schedule beat the best hand-coded one?
  std::ostringstream verdict;
  for (const auto& le : c.schedules) {
    if (le.controller.empty()) continue;
    md << "## " << le.name << " vs the best hand-coded schedule per target\n\n"
       << "| target | " << le.name
       << " | best hand-coded | paired diff [95% CI] | verdict |\n|---|---|---|---|---|\n";
    std::vector<std::string> loses, sig_loses;
    for (const auto& tgt : c.targets) {
      const std::string& tn = tgt.first;
      std::string best;
      for (const auto& e : c.schedules)
        if (e.controller.empty() &&
            (best.empty() || mean_of(acc[tn][e.name]) > mean_of(acc[tn][best])))
          best = e.name;
      if (best.empty()) continue;
      Paired p = paired(acc[tn][le.name], acc[tn][best]);
      char buf[320];
      std::snprintf(buf, sizeof buf, "| %s | %.2f | %s %.2f | %+.2f [%+.2f, %+.2f] | %s |\n",
                    tn.c_str(), 100 * mean_of(acc[tn][le.name]), best.c_str(),
                    100 * mean_of(acc[tn][best]), 100 * p.mean, 100 * p.lo, 100 * p.hi,
                    p.verdict());
      md << buf;
      if (p.mean < 0) loses.push_back(tn + " (vs " + best + ")");
      if (p.hi < 0) sig_loses.push_back(tn);
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string r;
      for (const auto& x : v) r += (r.empty() ? "" : ", ") + x;
      return r;
    };
    std::string line =
        loses.empty() ? le.name + " is at or above the best hand-coded schedule on every target."
                      : le.name + " is below the best hand-coded schedule on: " + join(loses) +
                            (sig_loses.empty() ? " (none significantly)."
                                               : "; significantly on: " + join(sig_loses) + ".");
    md << "\n" << line << "\n\n";
    verdict << line << "\n";
  }
  std::printf("%-12s %-18s %18s %26s\n", "target", "schedule", "test acc (mean±sd)",
              "paired diff vs ref [95% CI]");
  for (size_t t = 0; t < c.targets.size(); ++t) {
    const std::string& tn = c.targets[t].first;
    md << "## " << tn << "\n\n| schedule | test acc mean ± std | paired diff vs " << c.reference
       << " [95% CI] | wall time (s, all seeds) |\n|---|---|---|---|\n";
    const auto& ref = acc[tn][c.reference];
    for (const auto& e : c.schedules) {
      const auto& v = acc[tn][e.name];
      double m = mean_of(v), sd = 0;
      for (double x : v) sd += (x - m) * (x - m) / (v.size() - 1);
      sd = std::sqrt(sd);
      char buf[256];
      std::string diff;
      if (e.name == c.reference) {
        diff = "(reference)";
      } else {
        Paired p = paired(v, ref);
        std::snprintf(buf, sizeof buf, "%+.2f [%+.2f, %+.2f] %s", 100 * p.mean, 100 * p.lo,
                      100 * p.hi, p.verdict());
        diff = buf;
      }
      std::snprintf(buf, sizeof buf, "| %s | %.2f ± %.2f | %s | %.0f |\n", e.name.c_str(), 100 * m,
                    100 * sd, diff.c_str(), secs[tn][e.name]);
      md << buf;
      std::printf("%-12s %-18s %11.2f ± %4.2f  %s\n", tn.c_str(), e.name.c_str(), 100 * m, 100 * sd,
                  diff.c_str());
    }
    md << "\n";
    if (!plots) continue;
    // Validation accuracy per epoch (seed 0) for every schedule, and the heatmaps.
    std::ostringstream gp;
    gp << "set xlabel 'epoch'\nset ylabel 'val acc (seed 0)'\nset key bottom "
          "right\nplot ";
    for (size_t e = 0; e < c.schedules.size(); ++e) {
      std::string dir = out + "/runs/" + tn + "/" + c.schedules[e].name + "/s0";
      std::ostringstream dat;
      for (const auto& p : inner::read_val_curve(dir + "/metrics.jsonl"))
        dat << p.epoch << " " << p.val_acc << "\n";
      std::string datp = out + "/" + tn + "_" + c.schedules[e].name + "_curve.dat";
      atomic_write(datp, dat.str());
      gp << (e ? ", " : "") << "'" << datp << "' with linespoints title '" << c.schedules[e].name
         << "'";
      auto table = sched::ScheduleTable::from_json(read_json_file(dir + "/schedule.json"),
                                                   dir + "/schedule.json");
      std::string png = out + "/" + tn + "_" + c.schedules[e].name + "_schedule.png";
      plot_heatmap(table, tn + ": " + c.schedules[e].name + " (seed 0)", png);
      md << "![" << c.schedules[e].name << "](" << fs::path(png).filename().string() << ") ";
    }
    gp << "\n";
    run_gnuplot(gp.str(), out + "/" + tn + "_curves.png", "compare");
    md << "\n\n![curves](" << tn << "_curves.png)\n\n";
  }
  // The meta-training curve of each learned controller whose directory holds its metrics.
  for (const auto& e : c.schedules) {
    if (e.controller.empty()) continue;
    fs::path dir = fs::is_directory(e.controller) ? fs::path(e.controller)
                                                  : fs::path(e.controller).parent_path();
    std::ifstream in(dir / "meta_metrics.jsonl");
    if (!in || !plots) continue;
    std::ostringstream train, val;
    std::string line;
    while (std::getline(in, line)) {
      json r;
      std::string json_error;
      if (!parse_json_strict(line, r, json_error) || !r.is_object() || !r.contains("step"))
        continue;
      if (r.contains("mean_fitness") && r["mean_fitness"].is_number())
        train << r["step"] << " " << r["mean_fitness"] << "\n";
      if (r.contains("val_fitness") && r["val_fitness"].is_number())
        val << r["step"] << " " << r["val_fitness"] << "\n";
    }
    std::string base = out + "/meta_" + e.name;
    atomic_write(base + "_train.dat", train.str());
    atomic_write(base + "_val.dat", val.str());
    std::ostringstream gp;
    gp << "set xlabel 'outer step'\nset ylabel 'fitness (1 = base schedule, lower is "
          "better)'\nset key top right\nplot '"
       << base << "_train.dat' with lines title 'training tasks (mean)', '" << base
       << "_val.dat' with linespoints title 'held-out validation tasks', 1 with lines dt 2 "
          "title 'base schedule'\n";
    run_gnuplot(gp.str(), base + ".png", "compare");
    md << "## Meta-training curve of " << e.name << " (" << dir.string() << ")\n\n![meta]("
       << fs::path(base + ".png").filename().string() << ")\n\n";
  }
  if (!plots) md << "(plots skipped: gnuplot is not installed)\n";
  atomic_write(out + "/report.md", md.str());
  std::printf("%sreport: %s/report.md, results: %s/results.csv\n", verdict.str().c_str(),
              out.c_str(), out.c_str());
  return kExitOk;
}

}  // namespace qsched::cli
