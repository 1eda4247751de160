// qsched schedules list | show: the registered schedule families and the table a config makes.
#include <cstdio>
#include <iostream>

#include "experiments/cli.h"
#include "experiments/run_flags.h"
#include "experiments/schedule_tools.h"
#include "schedules/factory.h"
#include "schedules/registry.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {

int schedules_list(const std::vector<std::string>& args) {
  po::options_description desc("qsched schedules list flags");
  desc.add_options()("help,h", "show this help");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched schedules list\n\nPrints every registered schedule family: "
                   "the quantity it gives (fraction: INQ,\nnoise: ANA), its formula, and its "
                   "parameters with type, default, range and meaning."))
    return kExitOk;
  const auto& reg = sched::registry();
  for (const auto& name : reg.registered_names()) {
    const auto& e = reg.entry(name, "schedules list");
    std::printf("%s  [%s]\n  %s\n", name.c_str(), sched::to_string(e.quantity).c_str(),
                e.doc.c_str());
    for (const auto& p : e.params) {
      std::string def = p.def.is_null() ? "-" : p.def.dump();
      std::string only =
          p.applies == sched::Applies::kBoth ? "" : " (" + sched::to_string(p.applies) + " only)";
      std::printf("    %-15s %-11s default %-12s %s\n    %15s %s%s\n", p.name.c_str(),
                  sched::to_string(p.type).c_str(), def.c_str(), p.rule().c_str(), "",
                  p.doc.c_str(), only.c_str());
    }
    std::printf("\n");
  }
  return kExitOk;
}

int schedules_show(const std::vector<std::string>& args) {
  RunFlags flags;
  int64_t layers = -1, epochs = -1;
  std::string plot;
  po::options_description desc("qsched schedules show flags");
  desc.add_options()("help,h", "show this help")(
      "layers", ranged<int64_t>(&layers, "layers", 1, 4096),
      "number of scheduled layers L (default: from the network)")(
      "epochs", ranged<int64_t>(&epochs, "epochs", 1, inner::kMaxEpochs),
      "quantization epochs T (default: train.epochs - pretrain_epochs)")(
      "plot", po::value(&plot), "also write a layer x epoch heatmap PNG (gnuplot)")(
      "config", po::value(&flags.config), "INQ or ANA JSON config")(
      "set", po::value(&flags.sets)->composing(), "override a config field (repeatable)");
  po::variables_map vm;
  if (!parse_flags(args, desc, vm,
                   "usage: qsched schedules show --config FILE [--layers L] [--epochs T] "
                   "[--plot OUT.png] [--set ...]\n\nPrints the layer x epoch table of values "
                   "(INQ frozen fraction, ANA noise) that the\nconfig's schedule gives, checked "
                   "against the invariants, exactly as a run would use it."))
    return kExitOk;
  TORCH_CHECK_VALUE(!flags.config.empty(), "missing --config FILE (an INQ or ANA config)");
  auto cfg = flags.resolve();
  auto setup = schedule_setup(cfg);
  if (layers >= 0) {
    setup.layers = layers;
    setup.layer_names.clear();
    for (int64_t l = 0; l < layers; ++l) setup.layer_names.push_back("layer" + std::to_string(l));
  }
  if (epochs >= 0) {
    setup.epochs = epochs;
  }
  TORCH_CHECK_VALUE(plot.empty() || gnuplot_available(), "--plot ", plot,
                    ": gnuplot is not installed or not on the PATH (Debian: apt-get install "
                    "gnuplot-nox)");
  const std::string what = "config: " + setup.algorithm + ".schedule";
  auto s = sched::make_schedule(setup.spec, setup.quantity, what);
  auto table = sched::materialize(*s, setup.epochs, setup.layers, what);
  std::printf("%s schedule %s\n%s: %lld layers x %lld quantization epochs\n",
              setup.algorithm.c_str(), s->describe().dump().c_str(),
              sched::to_string(setup.quantity).c_str(), static_cast<long long>(setup.layers),
              static_cast<long long>(setup.epochs));
  std::printf("%s", format_table(table, setup.layer_names).c_str());
  if (!plot.empty()) {
    plot_heatmap(table, setup.algorithm + " " + s->describe().value("family", std::string()), plot);
    std::printf("plot: %s\n", plot.c_str());
  }
  return kExitOk;
}

}  // namespace

int cmd_schedules(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf(
        "usage: qsched schedules list\n"
        "       qsched schedules show --config FILE [--layers L] [--epochs T] [--plot OUT.png]\n\n"
        "list: the registered schedule families and their parameters\n"
        "show: the layer x epoch table a config's schedule produces\n");
    return args.empty() ? kExitBadInput : kExitOk;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "list") return schedules_list(rest);
  if (args[0] == "show") return schedules_show(rest);
  TORCH_CHECK_VALUE(false, "unknown subcommand '", args[0], "' (valid: list, show)");
}

}  // namespace qsched::cli
