#pragma once
// The qsched command-line program: subcommand dispatch, flag parsing, exit codes.
//
//   qsched <command> [flags]        qsched --help, qsched <command> --help
//
// Exit codes: 0 success, 2 bad input (usage, config, data, checkpoint, an output directory that
// is not qsched's), 1 internal error, 3 a distributed peer was lost, 4 an I/O failure while
// writing (disk full, file too large, permission denied, a failed rename: IoError in
// inner/io.h; what was written before is intact), 130 interrupted (SIGINT/SIGTERM).
#include <string>
#include <vector>

namespace qsched::cli {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitPeerLost = 3;  ///< distributed run: another rank exited or stopped answering
constexpr int kExitIo = 4;        ///< writing failed (disk full, permissions, ...): inner/io.h

/// Entry point of the program; never throws.
int main(int argc, char** argv);

/// Subcommands (argv without the program and command names).
int cmd_train(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);
int cmd_infer(const std::vector<std::string>& args);
int cmd_summarize(const std::vector<std::string>& args);
int cmd_schedules(const std::vector<std::string>& args);
int cmd_sweep(const std::vector<std::string>& args);
int cmd_sweep_report(const std::vector<std::string>& args);
int cmd_meta_train(const std::vector<std::string>& args);
int cmd_apply(const std::vector<std::string>& args);
int cmd_compare(const std::vector<std::string>& args);
int cmd_launch(const std::vector<std::string>& args);

}  // namespace qsched::cli
