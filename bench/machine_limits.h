// What every benchmark measures first: this machine's own limits, in the same run as the
// workload, so that reported ratios compare numbers measured together.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <functional>

namespace align2::bench {

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

// Bytes/s of copying 256 MB (read + written), best of 5 after a warm-up.
inline double copy_bandwidth() {
  at::Tensor a = at::randn({64 << 20}), b = at::empty_like(a);
  b.copy_(a);
  double t = best_time(5, [&] { b.copy_(a); });
  return 2.0 * double(a.numel()) * 4 / t;
}

}  // namespace align2::bench
