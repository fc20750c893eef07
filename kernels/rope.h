// Rotary position embedding for decode (one token per row), rotate_half form, in place, fused:
// the angles' cos/sin computed once per (row, i) and shared by every head, where ATen builds
// cat'ed cos/sin tables and runs five ops per tensor. Raw arithmetic: pointers, sizes;
// single-threaded (the caller splits the rows across threads).
//
// Semantics (transformers' apply_rotary_pos_emb in the run dtype T), for i < half = head_dim / 2:
// angle = float(positions[r]) * inv_freq[i]; c = round_T(std::cos(angle)), s = round_T(std::sin(angle));
// with x1 = x[i], x2 = x[i + half] of each head:
//   x[i]        = round_T(round_T(x1 * c) - round_T(x2 * s))
//   x[i + half] = round_T(round_T(x2 * c) + round_T(x1 * s))
// round_T is the identity for float32 and round-to-nearest-even for bfloat16. Every output is
// its own few roundings (no sums), so the AVX-512 path and the plain reference give the same bits.
#pragma once

#include <cstdint>

namespace align2 {

// Rotates x in place.
//   x: float32 [rows, heads, head_dim] row-major (q or k of one token per row; head_dim even);
//   positions: int64 [rows], the token position of row r; inv_freq: float32 [head_dim / 2]
//   (1 / theta^(2i / head_dim), as transformers computes it).
void rope_f32(float* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows, std::int64_t heads,
              std::int64_t head_dim);

// The plain loop with the same arithmetic, for tests.
void rope_f32_reference(float* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
                        std::int64_t heads, std::int64_t head_dim);

// The same in bfloat16: x holds bfloat16 bit patterns [rows, heads, head_dim]; positions and
// inv_freq as above.
void rope_bf16(std::uint16_t* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
               std::int64_t heads, std::int64_t head_dim);
void rope_bf16_reference(std::uint16_t* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
                         std::int64_t heads, std::int64_t head_dim);

}  // namespace align2
