// kernels/gemv and kernels/linear_rows micro-benchmark, in one run: bytes of weights streamed
// per second by gemv_bf16 (rows split over threads as the engine does), against ATen's bf16
// linear and fp32 at::mv on the same shapes, and the machine's copy bandwidth; then the fp32
// Linear over M = 1, 8, 32 rows (decode batches): linear_rows_f32 against ATen's (OpenBLAS)
// linear, in GFLOP/s and as a share of the measured fp32 matmul peak.
// Usage: gemv_bench [THREADS]    (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "core/engine_runtime.h"
#include "bench/machine_limits.h"
#include "kernels/gemv.h"
#include "kernels/linear_rows.h"

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
  const double peak = matmul_peak(at::kFloat);
  fmt::print("fp32 matmul peak {:.1f} GFLOP/s; linear_rows_f32 path {}\n", peak / 1e9, align2::linear_rows_isa());
  for (auto [N, K] : {std::pair<std::int64_t, std::int64_t>{2816, 1024}, {1024, 2816}, {32000, 1024}}) {
    std::int64_t count = std::max<std::int64_t>(2, (400ll << 20) / (N * K * 4));
    std::vector<at::Tensor> w32;
    for (std::int64_t i = 0; i < count; ++i) w32.push_back(at::randn({N, K}));
    for (std::int64_t M : {1, 8, 32}) {
      at::Tensor x = at::randn({M, K}), y = at::empty({M, N});
      double flops = 2.0 * double(count) * double(M) * double(N) * double(K);
      double t_kernel = best_time(3, [&] {
        for (const at::Tensor& w : w32) {
          const float* wp = w.data_ptr<float>();
          at::parallel_for(0, N, 16, [&](std::int64_t b0, std::int64_t b1) {
            align2::linear_rows_f32(x.data_ptr<float>(), wp + b0 * K, y.data_ptr<float>() + b0, M, b1 - b0, K, N);
          });
        }
      });
      double t_aten = best_time(3, [&] {
        for (const at::Tensor& w : w32) at::linear(x, w);
      });
      fmt::print("[{} x {}] M={:2}: linear_rows_f32 {:6.1f} GFLOP/s ({:3.0f}% of peak, {:5.1f} GB/s of weights) | "
                 "ATen linear {:6.1f} GFLOP/s ({:3.0f}%)\n",
                 N, K, M, flops / t_kernel / 1e9, 100 * flops / t_kernel / peak,
                 double(count) * N * K * 4 / t_kernel / 1e9, flops / t_aten / 1e9, 100 * flops / t_aten / peak);
    }
  }
  return 0;
}
