#include "test/test_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace align2::test {

std::string shared_path(const std::string& relative) {
  fs::path p = fs::path(ALIGN2_SHARED_DIR) / relative;
  if (!fs::exists(p)) {
    ADD_FAILURE() << "test data missing: " << p
                  << " (shared/ must sit beside the checkout; see ../shared/README.md)";
    throw std::runtime_error("test data missing: " + p.string());
  }
  return fs::weakly_canonical(p).string();
}

std::string source_path(const std::string& relative) {
  return (fs::path(ALIGN2_SOURCE_DIR) / relative).string();
}

std::string scratch_dir(const std::string& name) {
  static std::atomic<int> counter{0};
  fs::path p = fs::temp_directory_path() /
               ("align2-test-" + name + "-" + std::to_string(getpid()) + "-" +
                std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string align2_bin() { return ALIGN2_BIN; }

CommandResult run_command(const std::string& command) {
  std::string err_path = scratch_dir("stderr") + "/err.txt";
  std::string full = "(" + command + ") 2>" + err_path;
  CommandResult result;
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.out.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.err = read_file(err_path);
  fs::remove_all(fs::path(err_path).parent_path());
  return result;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace align2::test
