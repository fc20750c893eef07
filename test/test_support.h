// Helpers shared by align2's tests: where the real data lives, scratch folders,
// running the align2 binary, reading and writing whole files.
#pragma once

#include <string>

namespace align2::test {

// ../shared beside the checkout (real LLaVA records, images, models). Aborts the
// test with a clear message when it is missing.
std::string shared_path(const std::string& relative);

// Root of the source tree (for bundled files such as examples/).
std::string source_path(const std::string& relative);

// A fresh empty folder unique to this process and `name`, under the system temp dir.
std::string scratch_dir(const std::string& name);

// The built align2 binary.
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

}  // namespace align2::test
