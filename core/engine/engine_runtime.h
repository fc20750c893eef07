// Process-wide settings for running the engine on CPU. Call once from main (or a
// benchmark), before loading models.
#pragma once

namespace align2 {

// Sets ATen's intra-op thread count to `threads` (>= 1) and tells glibc's allocator to
// keep freed memory instead of returning it to the kernel (M_MMAP_THRESHOLD and
// M_TRIM_THRESHOLD raised): the engine allocates and frees the same large activations
// every layer, and page faults on fresh memory otherwise cost ~10% of a prefill.
void configure_cpu_engine(int threads);

// Threads for one rank of a job: `configured` when > 0, else this node's cores divided by
// the ranks on it (OMPI_COMM_WORLD_LOCAL_SIZE under mpirun, SLURM_NTASKS_PER_NODE's first
// number under srun; 1 when neither is set), at least 1.
int threads_per_rank(unsigned long long configured);

}  // namespace align2
