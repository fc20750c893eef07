// Matrix-vector products for single-token decode on CPU, where general GEMM with one
// row runs far below memory bandwidth (OpenBLAS 0.3.21 sgemm with M = 1; ATen 1.13 has
// no fast bf16 GEMV). Raw arithmetic: pointers, sizes; single-threaded (the caller splits
// rows across threads). Each output is one fixed-order sum, so results do not depend on
// how rows are split.
#pragma once

#include <cstdint>

namespace align2 {

// y[n] = sum_k bf16_to_float(w[n * K + k]) * x[k] for n in [0, N).
//   w: bfloat16 bit patterns, [N, K] row-major; x: float32 [K]; y: float32 [N].
// The sum runs over 16 interleaved partial sums (lane j takes k ≡ j mod 16), added
// pairwise at the end, then the K % 16 tail in order.
void gemv_bf16(const std::uint16_t* w, const float* x, float* y, std::int64_t N, std::int64_t K);

// The plain loop with the same summation order, for tests.
void gemv_bf16_reference(const std::uint16_t* w, const float* x, float* y, std::int64_t N, std::int64_t K);

}  // namespace align2
