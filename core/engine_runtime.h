// Process-wide settings for running the engine on CPU. Call once from main (or a
// benchmark), before loading models.
#pragma once

namespace align2 {

// Sets ATen's intra-op thread count to `threads` (>= 1) and tells glibc's allocator to
// keep freed memory instead of returning it to the kernel (M_MMAP_THRESHOLD and
// M_TRIM_THRESHOLD raised): the engine allocates and frees the same large activations
// every layer, and page faults on fresh memory otherwise cost ~10% of a prefill.
void configure_cpu_engine(int threads);

}  // namespace align2
