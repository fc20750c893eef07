#include "kernels/linear_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace align2 {
namespace {

// Fixed reduction of the 16 lanes: pairwise, as a tree.
inline float reduce16(const float* a) {
  float b[8], c[4];
  for (int j = 0; j < 8; ++j) b[j] = a[j] + a[j + 8];
  for (int j = 0; j < 4; ++j) c[j] = b[j] + b[j + 4];
  return (c[0] + c[2]) + (c[1] + c[3]);
}

// The K % 16 tail of one output after its 16 lanes.
inline float finish(const float* lanes, const float* x, const float* w, std::int64_t K16, std::int64_t K) {
  float sum = reduce16(lanes);
  for (std::int64_t k = K16; k < K; ++k) sum = std::fma(x[k], w[k], sum);
  return sum;
}

// ---- AVX-512: a tile of MR input rows x NR weight rows, 16 lanes per accumulator register.
// (GCC 12's _mm512_extractf64x4_pd starts from an undefined vector: a false warning.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
template <int MR, int NR>
__attribute__((target("avx512f,fma"))) void tile_avx512(const float* x, const float* w, float* y, std::int64_t K,
                                                          std::int64_t ldy) {
  const std::int64_t K16 = K - K % 16;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K16; k += 16) {
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_ps(w + j * K + k);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      // reduce16's tree in registers: lanes j + 8, then j + 4, then (0 + 2) + (1 + 3).
      const __m512 a = acc[i][j];
      const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a),
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
      const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
      const __m128 t = _mm_add_ps(c, _mm_movehl_ps(c, c));
      float sum = _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
      for (std::int64_t k = K16; k < K; ++k) sum = std::fma(x[i * K + k], w[j * K + k], sum);
      y[i * ldy + j] = sum;
    }
}
#pragma GCC diagnostic pop

// ---- AVX2 + FMA: the same lanes as two 8-wide halves.
template <int MR, int NR>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, const float* w, float* y, std::int64_t K,
                                                     std::int64_t ldy) {
  const std::int64_t K16 = K - K % 16;
  __m256 lo[MR][NR], hi[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) lo[i][j] = hi[i][j] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < K16; k += 16) {
    for (int i = 0; i < MR; ++i) {
      const __m256 xl = _mm256_loadu_ps(x + i * K + k), xh = _mm256_loadu_ps(x + i * K + k + 8);
      for (int j = 0; j < NR; ++j) {
        lo[i][j] = _mm256_fmadd_ps(xl, _mm256_loadu_ps(w + j * K + k), lo[i][j]);
        hi[i][j] = _mm256_fmadd_ps(xh, _mm256_loadu_ps(w + j * K + k + 8), hi[i][j]);
      }
    }
  }
  alignas(32) float lanes[16];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      _mm256_store_ps(lanes, lo[i][j]);
      _mm256_store_ps(lanes + 8, hi[i][j]);
      y[i * ldy + j] = finish(lanes, x + i * K, w + j * K, K16, K);
    }
}

// ---- Scalar: std::fma per lane (CPUs without FMA; slow but the same numbers).
void tile_scalar(const float* x, const float* w, float* y, std::int64_t K, std::int64_t ldy, int mr, int nr) {
  const std::int64_t K16 = K - K % 16;
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float lanes[16] = {};
      for (std::int64_t k = 0; k < K16; k += 16)
        for (int l = 0; l < 16; ++l) lanes[l] = std::fma(x[i * K + k + l], w[j * K + k + l], lanes[l]);
      y[i * ldy + j] = finish(lanes, x + i * K, w + j * K, K16, K);
    }
}

using Tile = void (*)(const float*, const float*, float*, std::int64_t, std::int64_t);

// Tiles of up to 4 x 4 (AVX-512: 16 accumulators and 4 weight registers of the 32) or 2 x 2
// (AVX2: 8 of the 16 registers hold the accumulator halves).
template <int MR, int NR>
void avx512_tile(const float* x, const float* w, float* y, std::int64_t K, std::int64_t ldy) {
  tile_avx512<MR, NR>(x, w, y, K, ldy);
}
template <int MR, int NR>
void avx2_tile(const float* x, const float* w, float* y, std::int64_t K, std::int64_t ldy) {
  tile_avx2<MR, NR>(x, w, y, K, ldy);
}

const Tile kAvx512[4][4] = {
    {avx512_tile<1, 1>, avx512_tile<1, 2>, avx512_tile<1, 3>, avx512_tile<1, 4>},
    {avx512_tile<2, 1>, avx512_tile<2, 2>, avx512_tile<2, 3>, avx512_tile<2, 4>},
    {avx512_tile<3, 1>, avx512_tile<3, 2>, avx512_tile<3, 3>, avx512_tile<3, 4>},
    {avx512_tile<4, 1>, avx512_tile<4, 2>, avx512_tile<4, 3>, avx512_tile<4, 4>},
};
const Tile kAvx2[2][2] = {
    {avx2_tile<1, 1>, avx2_tile<1, 2>},
    {avx2_tile<2, 1>, avx2_tile<2, 2>},
};

enum class Isa { avx512, avx2, scalar };

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::scalar;
}

Isa isa() {
  static const Isa chosen = detect();
  return chosen;
}

}  // namespace

void linear_rows_f32(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                     std::int64_t ldy) {
  const Isa chosen = isa();
  const std::int64_t MR = chosen == Isa::avx512 ? 4 : 2, NR = chosen == Isa::avx512 ? 4 : 2;
  // Weight-stationary: a block of NR weight rows (read from memory once) meets every input row.
  for (std::int64_t n = 0; n < N; n += NR) {
    const int nr = int(std::min(NR, N - n));
    for (std::int64_t m = 0; m < M; m += MR) {
      const int mr = int(std::min(MR, M - m));
      const float *xt = x + m * K, *wt = w + n * K;
      float* yt = y + m * ldy + n;
      switch (chosen) {
        case Isa::avx512: kAvx512[mr - 1][nr - 1](xt, wt, yt, K, ldy); break;
        case Isa::avx2: kAvx2[mr - 1][nr - 1](xt, wt, yt, K, ldy); break;
        case Isa::scalar: tile_scalar(xt, wt, yt, K, ldy, mr, nr); break;
      }
    }
  }
}

void linear_rows_f32_reference(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N,
                               std::int64_t K, std::int64_t ldy) {
  const std::int64_t K16 = K - K % 16;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float lanes[16] = {};
      for (std::int64_t k = 0; k < K16; ++k) lanes[k % 16] = std::fma(x[m * K + k], w[n * K + k], lanes[k % 16]);
      y[m * ldy + n] = finish(lanes, x + m * K, w + n * K, K16, K);
    }
}

const char* linear_rows_isa() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::scalar: return "scalar";
  }
  return "scalar";
}

}  // namespace align2
