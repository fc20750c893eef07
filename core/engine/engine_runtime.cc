#include "core/engine/engine_runtime.h"

#include <ATen/Parallel.h>
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "core/engine/llama_model.h"  // bf16_rows_gemm_min
#include "core/util/host_memory.h"
#include "distributed/nccl_comm.h"  // cuda_free_bytes

#include <fmt/format.h>

namespace align2 {

void configure_cpu_engine(int threads) {
  if (threads < 1) throw std::invalid_argument("thread count must be at least 1");
  at::set_num_threads(threads);
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // allocations below 1 GiB come from the heap...
  mallopt(M_TRIM_THRESHOLD, -1);       // ...and freed heap memory is kept for reuse (-1: never trim)
  mallopt(M_ARENA_MAX, 2);             // few arenas: the engine allocates from one thread
  bf16_rows_gemm_min();                // a bad ALIGN2_BF16_ROWS_GEMM_MIN fails here, before any model loads
}

void return_free_memory() { malloc_trim(0); }

void report_loaded(const std::string& what, double seconds, at::Device device) {
  return_free_memory();
  std::fprintf(stderr, "align2: %s loaded in %.1f s (%s)\n", what.c_str(), seconds, device.str().c_str());
}

}  // namespace align2

namespace align2 {

int threads_per_rank(unsigned long long configured) {
  if (configured) return int(configured);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / ranks_on_node());
}

}  // namespace align2

namespace align2 {

namespace {

#if defined(ALIGN2_HAVE_CUDA)
bool cuda_device_count_known() { return true; }
#else
bool cuda_device_count_known() { return false; }
#endif

}  // namespace

at::Device engine_device(DeviceRequest request) {
  // GPUs need CUDA in libtorch (its kernels) and in align2's build (NCCL, the CUDA runtime):
  // counted through the runtime, an API that is the same for every libtorch version.
  const bool built = at::hasCUDA() && cuda_device_count_known();
  const int gpus = built ? cuda_device_count() : 0;
  const int local = request == DeviceRequest::cpu ? 0 : local_rank();
  const int ranks = std::max(ranks_on_node(), local + 1);
  const char* reason = !at::hasCUDA() ? "this align2 was built against a libtorch without CUDA (docs/gpu.md)"
                       : !built      ? "this align2 was built without CUDA and NCCL (ALIGN2_WITH_CUDA, docs/gpu.md)"
                                     : "no GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)";
  const int index = choose_device(request, gpus, local, ranks, one_gpu_per_task_from_env(read_launch_env()), reason);
  if (index < 0) return at::Device(at::kCPU);
  return at::Device(at::kCUDA, at::DeviceIndex(index));
}

at::ScalarType run_dtype(const std::string& name, at::Device device) {
  if (name == "f32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  throw std::invalid_argument("dtype \"" + name + "\": expected \"auto\", \"f32\" or \"bf16\"");
}

MemoryBudget memory_budget(at::Device device) {
  if (!device.is_cuda()) return rank_memory_budget();
  const std::uint64_t free = cuda_free_bytes(device.index());
  return {free, fmt::format("free memory of GPU {}", int(device.index()))};
}

std::string dtype_name(at::ScalarType dtype) {
  if (dtype == at::kBFloat16) return "bf16";
  if (dtype == at::kHalf) return "f16";
  return "f32";
}

}  // namespace align2
