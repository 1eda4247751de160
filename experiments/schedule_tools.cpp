#include "experiments/schedule_tools.h"

#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "inner/algorithms/registry.h"
#include "inner/io.h"
#include "inner/network.h"

namespace qsched::cli {

ScheduleSetup schedule_setup(const inner::RunConfig& cfg) {
  ScheduleSetup s;
  s.algorithm = cfg.algorithm;
  const auto& spec = inner::scheduled_algorithm(s.algorithm, "config: algorithm");
  s.quantity = *spec.quantity;
  json section = cfg.section();  // resolved by the algorithm: its defaults are filled in
  s.spec = spec.schedule_of(section);
  int64_t pre = section.value("pretrain_epochs", int64_t{0});
  s.epochs = cfg.train.epochs - pre;
  TORCH_CHECK_VALUE(s.epochs >= 1, "config: ", s.algorithm, ".pretrain_epochs = ", pre,
                    ". Violated constraint: pretrain_epochs < train.epochs (", cfg.train.epochs,
                    ")");
  inner::InputShape in;
  int64_t classes = 10;
  if (cfg.data.format == "cifar10") {
    in = {3, 32, 32};
  } else if (cfg.data.format == "synthetic") {
    in = {cfg.data.synthetic.channels, cfg.data.synthetic.height, cfg.data.synthetic.width};
    classes = cfg.data.synthetic.num_classes;
  }
  auto net = inner::build_network(cfg.network, in, classes);
  const auto& infos = net->quant_layers();
  const int64_t L = static_cast<int64_t>(infos.size());
  std::set<int64_t> excluded;
  if (section.contains("exclude") && section["exclude"].is_array())
    for (const auto& e : section["exclude"]) {
      if (e.is_number_integer()) excluded.insert(e.get<int64_t>());
      if (!e.is_string()) continue;
      if (e == "first") excluded.insert(0);
      if (e == "last") excluded.insert(L - 1);
      for (int64_t i = 0; i < L; ++i)
        if (infos[i].name == e.get<std::string>()) excluded.insert(i);
    }
  for (int64_t i = 0; i < L; ++i)
    if (!excluded.count(i)) s.layer_names.push_back(infos[i].name);
  s.layers = static_cast<int64_t>(s.layer_names.size());
  TORCH_CHECK_VALUE(s.layers >= 1, "config: ", s.algorithm, ".exclude leaves no layer");
  return s;
}

std::string format_table(const sched::ScheduleTable& t, const std::vector<std::string>& names) {
  std::ostringstream o;
  char buf[64];
  size_t w = 5;
  for (const auto& n : names) w = std::max(w, n.size());
  o << std::string(w, ' ') << " |";
  for (int64_t e = 0; e < t.epochs(); ++e) {
    std::snprintf(buf, sizeof buf, " %6lld", static_cast<long long>(e));
    o << buf;
  }
  o << "\n" << std::string(w, '-') << "-+" << std::string(7 * t.epochs(), '-') << "\n";
  for (int64_t l = 0; l < t.layers(); ++l) {
    std::string n = l < static_cast<int64_t>(names.size()) ? names[l] : std::to_string(l);
    o << n << std::string(w - n.size(), ' ') << " |";
    for (int64_t e = 0; e < t.epochs(); ++e) {
      std::snprintf(buf, sizeof buf, " %6.4f", t.values[e][l]);
      o << buf;
    }
    o << "\n";
  }
  return o.str();
}

bool gnuplot_available() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

void run_gnuplot(const std::string& script, const std::string& out_png, const std::string& what) {
  TORCH_CHECK_VALUE(gnuplot_available(), what,
                    ": gnuplot is not installed or not on the PATH (Debian: apt-get install "
                    "gnuplot-nox)");
  const std::string gp = out_png + ".gp";
  atomic_write(gp, "set terminal pngcairo size 900,540 noenhanced\nset output '" + out_png +
                       ".tmp'\n" + script + "\nunset output\n");
  std::string cmd = "gnuplot '" + gp + "' 2>'" + out_png + ".log'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::string log = file_exists(out_png + ".log") ? read_whole_file(out_png + ".log") : "";
    auto nl = log.find('\n');
    TORCH_CHECK_VALUE(false, what, ": gnuplot failed on '", gp, "': ", log.substr(0, nl));
  }
  std::remove((out_png + ".log").c_str());
  TORCH_CHECK_VALUE(std::rename((out_png + ".tmp").c_str(), out_png.c_str()) == 0, what,
                    ": cannot write '", out_png, "'");
}

void plot_heatmap(const sched::ScheduleTable& t, const std::string& title,
                  const std::string& out_png) {
  std::ostringstream d;
  for (int64_t l = 0; l < t.layers(); ++l) {
    for (int64_t e = 0; e < t.epochs(); ++e) d << (e ? " " : "") << t.values[e][l];
    d << "\n";
  }
  atomic_write(out_png + ".dat", d.str());
  double hi = 0;
  for (const auto& r : t.values)
    for (double x : r) hi = std::max(hi, x);
  std::ostringstream s;
  s << "set title '" << title << "'\nset xlabel 'epoch'\nset ylabel 'layer'\n"
    << "set cblabel '" << sched::to_string(t.quantity) << "'\n"
    << "set xrange [-0.5:" << t.epochs() - 0.5 << "]\nset yrange [-0.5:" << t.layers() - 0.5
    << "]\nset cbrange [0:" << (hi > 0 ? hi : 1) << "]\nset palette rgb 33,13,10\n"
    << "set xtics 1\nset ytics 1\n"
    << "plot '" << out_png << ".dat' matrix with image notitle\n";
  run_gnuplot(s.str(), out_png, "plot " + out_png);
}

}  // namespace qsched::cli
