// Process-wide settings for running the engine on CPU. Call once from main (or a
// benchmark), before loading models.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "core/util/host_memory.h"
#include "distributed/launch.h"  // DeviceRequest

namespace align2 {

// Sets ATen's intra-op thread count to `threads` (>= 1) and tells glibc's allocator to
// keep freed memory instead of returning it to the kernel (M_MMAP_THRESHOLD and
// M_TRIM_THRESHOLD raised): the engine allocates and frees the same large activations
// every layer, and page faults on fresh memory otherwise cost ~10% of a prefill. Reads
// ALIGN2_BF16_ROWS_GEMM_MIN (core/engine/llama_model.h): a bad value throws here.
void configure_cpu_engine(int threads);

// Hands the heap's free pages back to the kernel (glibc malloc_trim). configure_cpu_engine keeps
// freed memory for reuse; call this when a model has been loaded (its conversion temporaries are
// free) or released, so that a rank's memory is its model's, not the high-water mark of loading.
void return_free_memory();

// After a model has loaded (in `seconds`): hands the loading's temporaries back to the kernel and
// prints one line to stderr, "align2: <what> loaded in S s (<device>)". A stage's first call includes its model's load;
// this line says how long that part took.
void report_loaded(const std::string& what, double seconds, at::Device device);

// Threads for one rank of a job: `configured` when > 0, else this node's cores divided by
// the ranks on it (OMPI_COMM_WORLD_LOCAL_SIZE under mpirun, SLURM_NTASKS_PER_NODE's first
// number under srun; 1 when neither is set), at least 1.
int threads_per_rank(unsigned long long configured);

}  // namespace align2

namespace align2 {

// The device this rank's models run on, for a `device` setting: choose_device
// (distributed/launch.h) over the GPUs this libtorch can use (0 when it was built without
// CUDA), this rank's local index (local_rank(): collective under MPI when no launcher
// variable names it, so call it on every rank or on none) and ranks_on_node(). The models
// are placed on the returned device explicitly (it does not change the current CUDA device).
// Throws std::runtime_error as choose_device does.
at::Device engine_device(DeviceRequest request);

// Each dtype setting's run dtype on `device`: "f32", "bf16", or "auto" = bf16 on a GPU and
// f32 on the CPU (the engine's reference arithmetic there). Throws std::invalid_argument
// for another name.
at::ScalarType run_dtype(const std::string& name, at::Device device);

// What this rank may use on `device`: its share of the node's memory (rank_memory_budget) on
// the CPU, the GPU's free memory (cudaMemGetInfo) on a GPU.
MemoryBudget memory_budget(at::Device device);

// "f32" or "bf16" (the names fingerprints and logs use); "f16" for half.
std::string dtype_name(at::ScalarType dtype);

}  // namespace align2
