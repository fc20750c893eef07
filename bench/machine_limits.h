// What every benchmark measures first: this machine's own limits, in the same run as the
// workload, so that reported ratios compare numbers measured together.
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "bench/cpu_info.h"
#include "core/engine/llama_model.h"
#include "kernels/linear_rows.h"

namespace align2::bench {

// "cpu: <model>, N threads; ISA paths: ..." - the first line of every engine benchmark.
inline std::string cpu_and_isa_line() {
  const std::int64_t gemm_rows = bf16_rows_gemm_min();
  const std::string bf16_rows = gemm_rows > kLinearRowsMax
                                    ? fmt::format("1-{} rows", kLinearRowsMax)
                                    : fmt::format("1-{} rows, ATen GEMM from {}", gemm_rows - 1, gemm_rows);
  return fmt::format("cpu: {}; AMX-BF16 {}; ISA paths: linear_rows {} (fp32), {} (bf16, {}); dense bf16 products in {}",
                     cpu_model(), cpu_has_amx_bf16() ? "yes" : "no", linear_rows_isa(), linear_rows_bf16_bf16_isa(),
                     bf16_rows, dense_bf16_path());
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The fastest of `reps` runs of fn(), in seconds.
inline double best_time(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_s();
    fn();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

// FLOP/s of a 2048³ matrix product in `dtype` (best of 3, after one warm-up).
inline double matmul_peak(at::ScalarType dtype) {
  const std::int64_t n = 2048;
  at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  at::matmul(a, b);
  double t = best_time(3, [&] { at::matmul(a, b); });
  return 2.0 * double(n) * n * n / t;
}

// Waits for every kernel queued on `t`'s device: reads one element back to the host (a
// device-to-host copy waits for the stream). ATen only, so it compiles against any libtorch;
// a no-op wait on the CPU.
inline void device_sync(const at::Tensor& t) { (void)t.reshape({-1})[0].item<float>(); }

// FLOP/s of an n x n x n matrix product in `dtype` on `device`: `iters` products per timed run,
// best of `reps` runs after 3 warm-ups, each run ended by device_sync. On a GPU the queue is
// drained before the clock starts, so a run times exactly its `iters` products. The inputs are
// random (normal): products of zeros run measurably faster on some GPUs.
inline double device_matmul_peak(at::ScalarType dtype, at::Device device, std::int64_t n = 8192, int iters = 10,
                                 int reps = 5) {
  const at::TensorOptions o = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor a = at::randn({n, n}, o), b = at::randn({n, n}, o), c = at::empty({n, n}, o);
  for (int i = 0; i < 3; ++i) at::matmul_out(c, a, b);
  device_sync(c);
  const double t = best_time(reps, [&] {
    for (int i = 0; i < iters; ++i) at::matmul_out(c, a, b);
    device_sync(c);
  });
  return 2.0 * double(n) * double(n) * double(n) * iters / t;
}

// Bytes/s of copying 256 MB (read + written), best of 5 after a warm-up.
inline double copy_bandwidth() {
  at::Tensor a = at::randn({64 << 20}), b = at::empty_like(a);
  b.copy_(a);
  double t = best_time(5, [&] { b.copy_(a); });
  return 2.0 * double(a.numel()) * 4 / t;
}

}  // namespace align2::bench
