#include "experiments/cli.h"

#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>

#include "inner/io.h"
#include "inner/runtime.h"
#include "meta/collective.h"

namespace po = boost::program_options;

namespace qsched::cli {

namespace {

struct Command {
  const char* name;
  const char* summary;
  std::function<int(const std::vector<std::string>&)> run;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> k = {
      {"demo", "the main job on the embedded default data (Fashion-MNIST)", cmd_demo},
      {"train", "one training run (float, INQ or ANA) from a JSON config", cmd_train},
      {"bench", "GEMM peak, training throughput and fraction of peak on this machine", cmd_bench},
      {"summarize", "test accuracy of finished runs and mean ± std (e.g. over seeds)",
       cmd_summarize},
      {"export", "a finished INQ run as a compact power-of-two file (+ JSON, --verify)",
       cmd_export},
      {"infer", "test accuracy of an exported file with the torch-free reference", cmd_infer},
      {"schedules", "schedule families (list) and the table a config makes (show)", cmd_schedules},
      {"sweep", "grid/random search over a schedule family: runs, results.csv, report", cmd_sweep},
      {"sweep-report", "report.md and plots of a sweep directory", cmd_sweep_report},
      {"meta-train", "meta-train a schedule controller (ES) on a task family", cmd_meta_train},
      {"apply", "run INQ/ANA on a network with a trained controller as the schedule", cmd_apply},
      {"compare", "learned vs hand-coded schedules, paired over seeds: table, report, plots",
       cmd_compare},
      {"launch", "N local workers of a command for distributed runs (RANK, WORLD_SIZE...)",
       cmd_launch},
  };
  return k;
}

void print_help() {
  std::printf(
      "qsched: learned schedules for quantization-aware training (INQ, ANA) on LibTorch\n\n"
      "usage: qsched <command> [flags]      (qsched <command> --help for its flags)\n\n"
      "commands:\n");
  for (const auto& c : commands()) std::printf("  %-12s %s\n", c.name, c.summary);
  std::printf(
      "\nexit codes: 0 ok, 1 internal error,\n"
      "            2 bad input (usage, config, data, a corrupt checkpoint or controller, an\n"
      "              output directory that is not qsched's: see --force),\n"
      "            3 a distributed peer was lost (continue with --resume),\n"
      "            4 writing failed (disk full, file too large, permission denied); files\n"
      "              written before are intact,\n"
      "            130 interrupted (the message says whether a checkpoint was saved)\n");
}

}  // namespace

int main(int argc, char** argv) {
  // A file-size limit (ulimit -f) must be an I/O error (exit 4, files intact), not a kill by
  // SIGXFSZ: ignored, the write fails with EFBIG and atomic_write reports it.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_help();
    return argc < 2 ? kExitBadInput : kExitOk;
  }
  std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : commands()) {
    if (name != c.name) continue;
    try {
      std::string w = blas_warning();
      if (!w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
      return c.run(args);
    } catch (const c10::ValueError& e) {
      std::fprintf(stderr, "qsched %s: error: %s\n", c.name, e.what_without_backtrace());
      return kExitBadInput;
    } catch (const po::error& e) {
      std::fprintf(stderr, "qsched %s: error: %s (see qsched %s --help)\n", c.name, e.what(),
                   c.name);
      return kExitBadInput;
    } catch (const meta::PeerFailure& e) {
      std::fprintf(stderr, "qsched %s: error: %s; the last checkpoint resumes with --resume\n",
                   c.name, e.what_without_backtrace());
      return kExitPeerLost;
    } catch (const IoError& e) {
      std::fprintf(stderr, "qsched %s: I/O error: %s\n", c.name, one_line(e).c_str());
      return kExitIo;
    } catch (const c10::Error& e) {
      std::fprintf(stderr, "qsched %s: internal error: %s\n", c.name, e.what_without_backtrace());
      return kExitInternal;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "qsched %s: internal error: %s\n", c.name, e.what());
      return kExitInternal;
    }
  }
  std::fprintf(stderr, "qsched: unknown command '%s' (see qsched --help)\n", name.c_str());
  return kExitBadInput;
}

}  // namespace qsched::cli
