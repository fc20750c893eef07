// What the CPU kernels of this folder share (internal to kernels/, included by their .cc files
// only): bfloat16 conversions, element access by buffer type, and the fixed 16-lane reduction
// tree, in scalar form and AVX-512 form with the same additions in the same order.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

// AVX-512 code goes between these: GCC 12's integer and cast intrinsics start from an undefined
// vector, which its uninitialized-use warnings report falsely.
#if defined(__clang__)
#define ALIGN2_INTRINSICS_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#else
#define ALIGN2_INTRINSICS_BEGIN                                                            \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#endif
#define ALIGN2_INTRINSICS_END _Pragma("GCC diagnostic pop")

namespace align2::lanes {

// bfloat16 is the high half of a float32: widened exactly, rounded to nearest even on store.
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return std::uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
inline float from_bf16(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element k as float32; v stored as T; v rounded to T and widened back (round_T). The pointer
// only picks the type.
inline float widen(const float* p, std::int64_t k) { return p[k]; }
inline float widen(const std::uint16_t* p, std::int64_t k) { return from_bf16(p[k]); }
inline void put(float* p, std::int64_t k, float v) { p[k] = v; }
inline void put(std::uint16_t* p, std::int64_t k, float v) { p[k] = to_bf16(v); }
inline float rounded(const float*, float v) { return v; }
inline float rounded(const std::uint16_t*, float v) { return from_bf16(to_bf16(v)); }

// Fixed reduction of 16 lanes: pairwise, as a tree (lane j + 8, then j + 4, then
// (0 + 2) + (1 + 3)).
inline float reduce16(const float* a) {
  float b[8], c[4];
  for (int j = 0; j < 8; ++j) b[j] = a[j] + a[j + 8];
  for (int j = 0; j < 4; ++j) c[j] = b[j] + b[j + 4];
  return (c[0] + c[2]) + (c[1] + c[3]);
}

// Whether this CPU runs the AVX-512 (+ FMA) paths; the others take the plain references.
inline bool have_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

// ---- AVX-512: 16 lanes in one register.
ALIGN2_INTRINSICS_BEGIN
__attribute__((target("avx512f"))) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline __m512 load16(const std::uint16_t* p) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
// to_bf16 of each lane, in the low 16 bits of its 32.
__attribute__((target("avx512f"))) inline __m512i bf16_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
}
__attribute__((target("avx512f"))) inline __m512 rounded16(const float*, __m512 v) { return v; }
__attribute__((target("avx512f"))) inline __m512 rounded16(const std::uint16_t*, __m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(v), 16));
}
__attribute__((target("avx512f"))) inline void store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
__attribute__((target("avx512f"))) inline void store16(std::uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bf16_bits(v)));
}
// reduce16's tree in registers.
__attribute__((target("avx512f"))) inline float reduce16(__m512 a) {
  const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a),
                                 _mm512_castps512_ps256(_mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(3, 2, 3, 2))));
  const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  const __m128 t = _mm_add_ps(c, _mm_movehl_ps(c, c));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
ALIGN2_INTRINSICS_END

}  // namespace align2::lanes
