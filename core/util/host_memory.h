// How much memory this rank may use: the node's available memory (MemAvailable, capped by the
// process's cgroup limit) shared among the ranks on the node. A model that would not fit is
// refused before loading (core/model/memory_estimate.h), instead of being killed midway.
#pragma once

#include <cstdint>
#include <string>

namespace align2 {

// Ranks of this job on this node: OMPI_COMM_WORLD_LOCAL_SIZE under mpirun, the first number of
// SLURM_NTASKS_PER_NODE under srun ("2(x3)" reads as 2), else 1.
int ranks_on_node();

struct MemoryBudget {
  std::uint64_t bytes = 0;  // what this rank may use; 0 = unknown (nothing is refused)
  std::string how;          // where the figure comes from, for messages
};

// The node's available memory now (MemAvailable of /proc/meminfo; the cgroup v2 memory.max
// or v1 memory.limit_in_bytes, less the cgroup's usage, when lower), divided by ranks_on_node().
MemoryBudget rank_memory_budget();

// "13.6 GiB": bytes for people.
std::string gib(std::uint64_t bytes);

}  // namespace align2
