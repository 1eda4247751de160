#pragma once
// `qsched launch` (experiments/cmd_launch.cpp): which worker the launcher names when several
// fail. A pure function, so the rule is tested without racing processes.
#include <vector>

namespace qsched::cli {

/// How one worker ended.
struct WorkerEnd {
  int rank = 0;
  int status = 0;               ///< waitpid() status
  int order = 0;                ///< 0 for the worker reaped first, 1 for the next, ...
  bool signaled_by_us = false;  ///< the launcher sent it SIGINT/SIGTERM/SIGKILL (forwarded
                                ///< from the user, or its own stop after a failure)
};

/// Index into `ends` of the worker to name as the failure, or -1 when none failed on its own.
/// A worker that ended by a signal the launcher sent it, or with code 130 after it, is a
/// consequence, not a cause. Among the rest that did not exit 0, in this order of preference:
///   1. killed by a signal (crash, OOM killer, kill -9 from outside): the root cause;
///   2. any other non-zero exit code except 3 (bad input, internal error);
///   3. exit code 3: "a peer was lost", which the loss of another rank causes;
/// and within a class the one reaped first. Reaping order alone is not enough: when a worker
/// is killed, its peers notice at once and exit 3, and a loaded launcher may reap them before
/// the killed worker.
int first_failure(const std::vector<WorkerEnd>& ends);

}  // namespace qsched::cli
