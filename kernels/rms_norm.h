// LLaMA's RMSNorm over a few rows (decode: one row per sequence), fused: one pass for the mean
// square, one for the scaled output, where ATen runs five small ops. Raw arithmetic: pointers,
// sizes; single-threaded (the caller splits the rows across threads).
//
// Semantics (transformers' LlamaRMSNorm in the run dtype T): xf = float(x);
// ms = (sum over k of xf[k]²) / n; r = 1.0f / std::sqrt(ms + eps); h = round_T(xf * r);
// out = round_T(float(w) * h). round_T is the identity for float32 and round-to-nearest-even
// for bfloat16.
//
// The sum of squares is one fixed-order sum: 16 lanes (lane j takes k = j mod 16), each a chain
// of fused multiply-adds in k order, reduced pairwise as a tree (j + 8, then j + 4, then
// (0 + 2) + (1 + 3)), then the n % 16 tail in order by fused multiply-add. It depends on neither
// the rows, how the caller splits them, nor the instruction set, so the AVX-512 path and the
// plain reference give the same bits.
#pragma once

#include <cstdint>

namespace align2 {

// out[r * n + k] for r in [0, rows), k in [0, n).
//   x: float32 [rows, n] row-major (the activations); w: float32 [n] (the norm weight);
//   out: float32 [rows, n] row-major; may be x itself (in place), no other overlap.
//   eps: the config's rms_norm_eps.
void rms_norm_f32(const float* x, const float* w, float* out, std::int64_t rows, std::int64_t n, float eps);

// The plain loop with the same arithmetic in the same order, for tests.
void rms_norm_f32_reference(const float* x, const float* w, float* out, std::int64_t rows, std::int64_t n,
                            float eps);

// The same in bfloat16: x, w, out hold bfloat16 bit patterns ([rows, n], [n], [rows, n]), each
// widened to float32 exactly; h and out rounded to nearest even. out may be x.
void rms_norm_bf16(const std::uint16_t* x, const std::uint16_t* w, std::uint16_t* out, std::int64_t rows,
                   std::int64_t n, float eps);
void rms_norm_bf16_reference(const std::uint16_t* x, const std::uint16_t* w, std::uint16_t* out, std::int64_t rows,
                             std::int64_t n, float eps);

}  // namespace align2
