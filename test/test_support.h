// Helpers shared by align2's tests: where the real data lives, scratch folders,
// running the align2 binary, reading and writing whole files.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace align2::test {

// ../shared beside the checkout (real LLaVA records, images, models). Aborts the
// test with a clear message when it is missing.
std::string shared_path(const std::string& relative);

// Root of the source tree (for bundled files such as examples/).
std::string source_path(const std::string& relative);

// A fresh empty folder unique to this process and `name`, under the system temp dir.
std::string scratch_dir(const std::string& name);

// The built align2 binary. In a torch-free build (no binary) it marks the running test
// SKIPPED and leaves the test body (only call it from inside a test).
std::string align2_bin();

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `command` through /bin/sh; stdout and stderr are captured separately.
CommandResult run_command(const std::string& command);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

// Processes whose command line contains `needle` and whose name is align2 (the ranks of a
// job, not mpirun).
std::vector<pid_t> ranks_running(const std::string& needle);

// Committed chunk files directly in `dir` (not the claims folder, not temporaries): *.h5 files
// with their .sha256 checksum beside. A chunk is committed once its checksum is written
// (core/store/work_dir.cc): a disk that fills between the two leaves an .h5 that is not.
std::size_t chunks_in(const std::string& dir);

// The kill -9 of one rank of a frozen job: `ranks` were stopped with SIGSTOP (so that nothing
// more is committed); `victim` gets SIGKILL; the others stay frozen while the launcher takes
// the job down (`launcher_alive` says whether it still runs), and whatever still matches
// `needle` after 5 s is killed too; then the frozen ranks get SIGCONT (to die).
void kill_frozen_rank(pid_t victim, const std::vector<pid_t>& ranks, const std::string& needle,
                      const std::function<bool()>& launcher_alive);

}  // namespace align2::test
