// Attention of one new query per sequence (decode) against its KV cache, fused: scores, masked
// softmax and the weighted sum of values in one pass per (sequence, head), reading the cache in
// place (grouped-query attention without copies; the heads that share a kv head read each K row
// once), where ATen runs matmul, mask, softmax and matmul over padded [B, heads, 1, S] tensors.
// Raw arithmetic: pointers, sizes; single-threaded over a range of work items (the caller splits
// the batch * heads items across threads).
//
// Per item p = b * heads + h (kv head g = h / (heads / kv_heads), L = lengths[b]), in float32:
//   s_j = dot(q, k_j) * scale for j < L. The dot is one fixed-order sum: 16 lanes (lane l takes
//       d = l mod 16), each a chain of fused multiply-adds in d order, reduced pairwise as a tree
//       (l + 8, then l + 4, then (0 + 2) + (1 + 3)), then the head_dim % 16 tail in order by
//       fused multiply-add.
//   m = max_j s_j; e_j = exp(s_j - m) (this file's exp: Cephes' polynomial, mul then add, the
//       same scalar and vectorised); sum = the e_j in 16 lanes (lane l takes j = l mod 16) added
//       in j order, reduced by the same tree, then the L % 16 tail in order; p_j = e_j * (1 / sum).
//   o[d] = a chain of fused multiply-adds p_j * v_j[d] in j ascending from 0; out = round_T(o).
// No order depends on the batch, the other items, how the caller splits them, or the instruction
// set, so the AVX-512 path and the plain reference give the same bits.
#pragma once

#include <cstdint>

namespace align2 {

// out rows p in [begin, end), 0 <= begin <= end <= batch * heads.
//   q: float32 [batch, heads, head_dim] (the new token's rotated queries);
//   k_cache, v_cache: float32 [batch, kv_heads, capacity, head_dim] (positions [0, lengths[b])
//     of sequence b are read, nothing beyond);
//   lengths: int64 [batch], each in [1, capacity] (the new token's key is at lengths[b] - 1);
//   out: float32 [batch, heads, head_dim] (only rows [begin, end) written; no overlap with q);
//   heads % kv_heads == 0; scale: usually 1 / sqrt(head_dim).
void decode_attention_f32(const float* q, const float* k_cache, const float* v_cache, const std::int64_t* lengths,
                          float* out, std::int64_t batch, std::int64_t heads, std::int64_t kv_heads,
                          std::int64_t capacity, std::int64_t head_dim, float scale, std::int64_t begin,
                          std::int64_t end);

// The plain loop with the same arithmetic in the same order, for tests.
void decode_attention_f32_reference(const float* q, const float* k_cache, const float* v_cache,
                                    const std::int64_t* lengths, float* out, std::int64_t batch, std::int64_t heads,
                                    std::int64_t kv_heads, std::int64_t capacity, std::int64_t head_dim, float scale,
                                    std::int64_t begin, std::int64_t end);

// The same in bfloat16: q, k_cache, v_cache, out hold bfloat16 bit patterns of the shapes
// above, widened to float32 exactly; out rounded to nearest even. lengths as above.
void decode_attention_bf16(const std::uint16_t* q, const std::uint16_t* k_cache, const std::uint16_t* v_cache,
                           const std::int64_t* lengths, std::uint16_t* out, std::int64_t batch, std::int64_t heads,
                           std::int64_t kv_heads, std::int64_t capacity, std::int64_t head_dim, float scale,
                           std::int64_t begin, std::int64_t end);
void decode_attention_bf16_reference(const std::uint16_t* q, const std::uint16_t* k_cache,
                                     const std::uint16_t* v_cache, const std::int64_t* lengths, std::uint16_t* out,
                                     std::int64_t batch, std::int64_t heads, std::int64_t kv_heads,
                                     std::int64_t capacity, std::int64_t head_dim, float scale, std::int64_t begin,
                                     std::int64_t end);

}  // namespace align2
