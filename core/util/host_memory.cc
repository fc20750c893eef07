#include "core/util/host_memory.h"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace align2 {
namespace {

// The first number of a file such as memory.max ("max" or "123456\n"); 0 when absent or "max".
std::uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(word.c_str(), &end, 10);
  return end && *end == '\0' ? std::uint64_t(v) : 0;
}

// MemAvailable of /proc/meminfo in bytes; 0 when it cannot be read.
std::uint64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace

int ranks_on_node() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(name);
    if (v && std::atoi(v) > 0) return std::atoi(v);
  }
  return 1;
}

MemoryBudget rank_memory_budget() {
  std::uint64_t bytes = mem_available();
  std::string how = fmt::format("MemAvailable {}", gib(bytes));
  struct Limit {
    const char* max;
    const char* used;
  };
  for (const Limit& l : {Limit{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                         Limit{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const std::uint64_t limit = read_number(l.max), used = read_number(l.used);
    if (limit == 0 || limit >= (1ull << 60)) continue;  // no limit ("max", or v1's huge default)
    const std::uint64_t left = limit > used ? limit - used : 0;
    if (bytes == 0 || left < bytes) {
      bytes = left;
      how = fmt::format("cgroup limit {} less {} in use", gib(limit), gib(used));
    }
    break;
  }
  const int ranks = ranks_on_node();
  if (ranks > 1) how += fmt::format(", shared by {} ranks on this node", ranks);
  return {bytes / std::uint64_t(ranks), how};
}

std::string gib(std::uint64_t bytes) { return fmt::format("{:.1f} GiB", double(bytes) / double(1ull << 30)); }

}  // namespace align2
