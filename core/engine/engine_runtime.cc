#include "core/engine/engine_runtime.h"

#include <ATen/Parallel.h>
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "core/util/host_memory.h"

namespace align2 {

void configure_cpu_engine(int threads) {
  if (threads < 1) throw std::invalid_argument("thread count must be at least 1");
  at::set_num_threads(threads);
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // allocations below 1 GiB come from the heap...
  mallopt(M_TRIM_THRESHOLD, -1);       // ...and freed heap memory is kept for reuse (-1: never trim)
  mallopt(M_ARENA_MAX, 2);             // few arenas: the engine allocates from one thread
}

}  // namespace align2

namespace align2 {

int threads_per_rank(unsigned long long configured) {
  if (configured) return int(configured);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / ranks_on_node());
}

}  // namespace align2
