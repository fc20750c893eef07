#include "test/test_support.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

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

std::string align2_bin() {
  std::string bin = ALIGN2_BIN;
  if (bin.empty()) {
    // A torch-free build (sanitizers, fuzzing) has no align2 binary: record the running test
    // as skipped and leave its body. gtest catches AssertionException silently (the result is
    // already recorded), so the test reports SKIPPED, not failed.
    const char* why = "no align2 binary in this build (torch-free: ALIGN2_TORCH_FREE/ALIGN2_SANITIZE)";
    GTEST_MESSAGE_(why, ::testing::TestPartResult::kSkip);
    throw ::testing::AssertionException(
        ::testing::TestPartResult(::testing::TestPartResult::kSkip, __FILE__, __LINE__, why));
  }
  return bin;
}

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

std::vector<pid_t> ranks_running(const std::string& needle) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline, comm;
    try {  // the process may end while it is looked at
      cmdline = read_file(it->path().string() + "/cmdline");
      comm = read_file(it->path().string() + "/comm");
    } catch (const std::exception&) {
      continue;
    }
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (comm.rfind("align2", 0) == 0 && cmdline.find(needle) != std::string::npos) pids.push_back(pid_t(std::stol(name)));
  }
  return pids;
}

std::size_t chunks_in(const std::string& dir) {
  std::error_code ec;
  std::size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    n += it->is_regular_file() && it->path().extension() == ".h5" && fs::exists(it->path().string() + ".sha256");
  return n;
}

void kill_frozen_rank(pid_t victim, const std::vector<pid_t>& ranks, const std::string& needle,
                      const std::function<bool()>& launcher_alive) {
  kill(victim, SIGKILL);
  auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (launcher_alive() && std::chrono::steady_clock::now() < grace)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (pid_t p : ranks_running(needle)) kill(p, SIGKILL);
  for (pid_t p : ranks) kill(p, SIGCONT);
}

}  // namespace align2::test
