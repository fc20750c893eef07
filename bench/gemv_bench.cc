// kernels/gemv micro-benchmark: bytes of weights streamed per second by gemv_bf16 (rows
// split over threads as the engine does), against ATen's bf16 linear and fp32 at::mv on
// the same shapes, and the machine's copy bandwidth, all in one run.
// Usage: gemv_bench [THREADS]    (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "core/engine_runtime.h"
#include "bench/machine_limits.h"
#include "kernels/gemv.h"

using namespace align2::bench;

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  align2::configure_cpu_engine(threads);
  double bw = copy_bandwidth();
  fmt::print("threads {}; copy bandwidth {:.1f} GB/s\n", threads, bw / 1e9);
  // 24 matrices of each shape: larger than the caches, as in decode.
  for (auto [N, K] : {std::pair<std::int64_t, std::int64_t>{2816, 1024}, {1024, 2816}, {4096, 4096}}) {
    std::int64_t count = std::max<std::int64_t>(4, (600ll << 20) / (N * K * 2));
    std::vector<at::Tensor> w16, w32;
    for (std::int64_t i = 0; i < count; ++i) {
      w32.push_back(at::randn({N, K}));
      w16.push_back(w32.back().to(at::kBFloat16));
    }
    at::Tensor x = at::randn({K}), y = at::empty({N});
    double bytes16 = double(count) * N * K * 2, bytes32 = bytes16 * 2;
    double t_kernel = best_time(3, [&] {
      for (const at::Tensor& w : w16) {
        const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>());
        at::parallel_for(0, N, 64, [&](std::int64_t b0, std::int64_t b1) {
          align2::gemv_bf16(wp + b0 * K, x.data_ptr<float>(), y.data_ptr<float>() + b0, b1 - b0, K);
        });
      }
    });
    at::Tensor x16 = x.to(at::kBFloat16).view({1, K});
    double t_aten16 = best_time(3, [&] {
      for (const at::Tensor& w : w16) at::linear(x16, w);
    });
    double t_mv32 = best_time(3, [&] {
      for (const at::Tensor& w : w32) at::mv(w, x);
    });
    fmt::print("[{} x {}] gemv_bf16 {:.1f} GB/s ({:.0f}% of copy bw) | ATen bf16 linear {:.1f} GB/s | fp32 at::mv {:.1f} GB/s ({:.0f}%)\n",
               N, K, bytes16 / t_kernel / 1e9, 100 * bytes16 / t_kernel / bw, bytes16 / t_aten16 / 1e9,
               bytes32 / t_mv32 / 1e9, 100 * bytes32 / t_mv32 / bw);
  }
  return 0;
}
