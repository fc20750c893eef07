// A Linear layer over a few rows (decode: one row per sequence of the batch), weight-stationary:
// each block of weight rows is read from memory once and used for every input row, where
// OpenBLAS repacks the whole weight matrix on every call with a small M. Raw arithmetic:
// pointers, sizes; single-threaded (the caller splits the N outputs across threads).
//
// Every output is one fixed-order sum: 16 lanes (lane j takes k = j mod 16), each a chain of
// fused multiply-adds in k order, reduced pairwise as a tree, then the K % 16 tail in order by
// fused multiply-add. The order depends on neither M, N, how the caller splits them, nor the
// instruction set (AVX-512, AVX2+FMA, or the scalar path with std::fma: FMA rounds once
// everywhere), so a sequence's result does not depend on the other sequences of its batch.
#pragma once

#include <cstdint>

namespace align2 {

// y[m * ldy + n] = sum_k x[m * K + k] * w[n * K + k] for m in [0, M), n in [0, N).
//   x: float32 [M, K] row-major (the activations); w: float32 [N, K] row-major (a PyTorch
//   Linear weight); y: float32 rows of stride ldy >= N (the first N of each row are written).
void linear_rows_f32(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                     std::int64_t ldy);

// The plain loop with the same summation order, for tests.
void linear_rows_f32_reference(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N,
                               std::int64_t K, std::int64_t ldy);

// Both operands bfloat16 (a bf16 run, whose activations are bfloat16 already): x holds
// bfloat16 bit patterns [M, K], w [N, K], y float32 as above. Its own fixed order, that of the
// AVX-512 BF16 dot-product instruction: 16 lanes, lane j takes the pairs k = 32 s + 2 j + 1 then
// 32 s + 2 j, each as a fused multiply-add (a product of two bfloat16 is exact in float32), the
// same tree, then the K % 32 tail in order. CPUs without AVX-512 BF16 emulate the order
// exactly. One difference: the instruction treats denormal inputs and results as zero, the
// emulation does not, so the paths agree for values above 1.2e-38 in magnitude.
void linear_rows_bf16_bf16(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t M, std::int64_t N,
                           std::int64_t K, std::int64_t ldy);
void linear_rows_bf16_bf16_reference(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t M,
                                     std::int64_t N, std::int64_t K, std::int64_t ldy);

// Which implementation linear_rows_f32 / _bf16 run on this CPU: "avx512", "avx2" or "scalar".
const char* linear_rows_isa();
// And linear_rows_bf16_bf16: "avx512bf16", or the emulating "avx512", "avx2", "scalar".
// The environment variable ALIGN2_LINEAR_ROWS_ISA=avx512|avx2|scalar, read once, selects a
// slower path than the CPU's best (tests run every path on one machine).
const char* linear_rows_bf16_bf16_isa();

// Whether this CPU has AMX-BF16 tiles and the OS saves their state (CPUID.(7,0):EDX bits 22 and
// 24, XCR0 bits 17 and 18): where oneDNN's bf16 GEMM (ATen's) multiplies 16-row tiles at several
// times the AVX-512 BF16 rate. Read once.
bool cpu_has_amx_bf16();

}  // namespace align2
