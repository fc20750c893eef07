// kernels/linear_rows micro-benchmark, in one run: this machine's copy bandwidth and fp32 and bf16
// matmul peaks, then the Linear layers of decode (weights [N, K] as in a LLaMA with hidden 1024 and
// vocabulary 32000) over M = 1, 8, 16, 32, 64 rows, float32 and bfloat16 (rows and weights): linear_rows
// (outputs split over threads as the engine does) against ATen's linear (OpenBLAS / oneDNN) on
// the same shapes. M = 1 is bound by the weights' bandwidth (GB/s of weights read), larger M by
// arithmetic (GFLOP/s against the measured matmul peak of the same dtype). Where ATen wins for
// bf16 from some M on (oneDNN on AMX), that M is what ALIGN2_BF16_ROWS_GEMM_MIN should be.
// Usage: linear_rows_bench [THREADS]    (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <thread>

#include "bench/machine_limits.h"
#include "core/engine/engine_runtime.h"
#include "kernels/linear_rows.h"

using namespace align2::bench;

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  align2::configure_cpu_engine(threads);
  fmt::print("{}\n", cpu_and_isa_line());
  const double bw = copy_bandwidth(), peak = matmul_peak(at::kFloat), peak16 = matmul_peak(at::kBFloat16);
  fmt::print("threads {}; copy bandwidth {:.1f} GB/s; matmul peak fp32 {:.1f} GFLOP/s, bf16 {:.1f} GFLOP/s; "
             "linear_rows paths: {} (fp32), {} (bf16)\n",
             threads, bw / 1e9, peak / 1e9, peak16 / 1e9, align2::linear_rows_isa(),
             align2::linear_rows_bf16_bf16_isa());
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const bool bf16 = dtype == at::kBFloat16;
    const double dtype_peak = bf16 ? peak16 : peak;
    for (auto [N, K] : {std::pair<std::int64_t, std::int64_t>{2816, 1024}, {1024, 2816}, {32000, 1024}}) {
      // Enough matrices to stream ~400 MB per pass: larger than the caches, as in decode.
      const std::int64_t elem = bf16 ? 2 : 4, count = std::max<std::int64_t>(2, (400ll << 20) / (N * K * elem));
      std::vector<at::Tensor> ws;
      for (std::int64_t i = 0; i < count; ++i) ws.push_back(at::randn({N, K}).to(dtype));
      for (std::int64_t M : {1, 8, 16, 32, 64}) {
        // Rows in the run dtype (a bf16 run's activations are bfloat16), float32 sums.
        at::Tensor x = at::randn({M, K}).to(dtype), y = at::empty({M, N});
        const double flops = 2.0 * double(count) * double(M) * double(N) * double(K);
        const double bytes = double(count) * double(N) * double(K) * double(elem);
        const double t_rows = best_time(3, [&] {
          for (const at::Tensor& w : ws)
            at::parallel_for(0, N, 16, [&](std::int64_t b0, std::int64_t b1) {
              if (bf16)
                align2::linear_rows_bf16_bf16(
                    reinterpret_cast<const std::uint16_t*>(x.data_ptr<at::BFloat16>()),
                    reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>()) + b0 * K,
                    y.data_ptr<float>() + b0, M, b1 - b0, K, N);
              else
                align2::linear_rows_f32(x.data_ptr<float>(), w.data_ptr<float>() + b0 * K, y.data_ptr<float>() + b0,
                                        M, b1 - b0, K, N);
            });
        });
        const double t_aten = best_time(3, [&] {
          for (const at::Tensor& w : ws) at::linear(x, w);
        });
        fmt::print("{} [{} x {}] M={:2}: linear_rows {:6.1f} GFLOP/s ({:3.0f}% of the {} peak), {:5.1f} GB/s of "
                   "weights ({:3.0f}% of copy bw) | ATen linear {:6.1f} GFLOP/s ({:3.0f}%), {:5.1f} GB/s\n",
                   bf16 ? "bf16" : "fp32", N, K, M, flops / t_rows / 1e9, 100 * flops / t_rows / dtype_peak,
                   bf16 ? "bf16" : "fp32", bytes / t_rows / 1e9, 100 * bytes / t_rows / bw, flops / t_aten / 1e9,
                   100 * flops / t_aten / dtype_peak, bytes / t_aten / 1e9);
      }
    }
  }
  return 0;
}
