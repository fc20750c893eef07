#include "kernels/linear_rows.h"
#include "kernels/lanes.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace align2 {
namespace {

using namespace lanes;

// The tail of one output after its reduced lanes (k from K16, the end of the lanes' part).
template <class X, class W>
inline float tail(float sum, const X* x, const W* w, std::int64_t K16, std::int64_t K) {
  for (std::int64_t k = K16; k < K; ++k) sum = std::fma(widen(x, k), widen(w, k), sum);
  return sum;
}

// ---- AVX-512: a tile of MR input rows x NR weight rows, 16 lanes per accumulator register.
ALIGN2_INTRINSICS_BEGIN
// The outputs of an MR x NR tile: reduced lanes, then each output's tail from k = Kl.
template <class X, class W, int MR, int NR>
__attribute__((target("avx512f"))) inline void store_tile(const __m512 (&acc)[MR][NR], const X* x, const W* w,
                                                          float* y, std::int64_t Kl, std::int64_t K,
                                                          std::int64_t ldy) {
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = tail(reduce16(acc[i][j]), x + i * K, w + j * K, Kl, K);
}

template <int MR, int NR>
__attribute__((target("avx512f,fma"))) void tile_avx512(const float* x, const float* w, float* y, std::int64_t K,
                                                          std::int64_t ldy) {
  const std::int64_t K16 = K - K % 16;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K16; k += 16) {
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = load16(w + j * K + k);
    // Wide tiles stream the weights at memory speed: fetch the next block's rows ahead (once per
    // 64-byte line; a prefetch past the matrix is harmless).
    if (NR >= 4 && (k * std::int64_t(sizeof(float))) % 64 == 0)
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(w + (NR + j) * K + k), _MM_HINT_T0);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  store_tile<float, float, MR, NR>(acc, x, w, y, K16, K, ldy);
}
ALIGN2_INTRINSICS_END

// ---- AVX2 + FMA: the same lanes as two 8-wide halves.
__attribute__((target("avx2"))) inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }

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
        lo[i][j] = _mm256_fmadd_ps(xl, load8(w + j * K + k), lo[i][j]);
        hi[i][j] = _mm256_fmadd_ps(xh, load8(w + j * K + k + 8), hi[i][j]);
      }
    }
  }
  alignas(32) float lanes[16];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      _mm256_store_ps(lanes, lo[i][j]);
      _mm256_store_ps(lanes + 8, hi[i][j]);
      y[i * ldy + j] = tail(reduce16(lanes), x + i * K, w + j * K, K16, K);
    }
}

// ---- Scalar: std::fma per lane (CPUs without FMA; slow but the same numbers).
void tile_scalar(const float* x, const float* w, float* y, std::int64_t K, std::int64_t ldy, int mr, int nr) {
  const std::int64_t K16 = K - K % 16;
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float lanes[16] = {};
      for (std::int64_t k = 0; k < K16; k += 16)
        for (int l = 0; l < 16; ++l) lanes[l] = std::fma(x[i * K + k + l], widen(w + j * K, k + l), lanes[l]);
      y[i * ldy + j] = tail(reduce16(lanes), x + i * K, w + j * K, K16, K);
    }
}

// ---- bfloat16 rows x bfloat16 weights: 16 lanes, lane j takes the pairs k = 32 s + 2 j (+1),
// odd element first (VDPBF16PS's order; a product of two bfloat16 is exact in float32, so each
// step rounds once, as an FMA does), the same tree, then the K % 32 tail in order.
ALIGN2_INTRINSICS_BEGIN
template <int MR, int NR>
__attribute__((target("avx512f,avx512bf16"))) void tile_dp_avx512bf16(const std::uint16_t* x,
                                                                        const std::uint16_t* w, float* y,
                                                                        std::int64_t K, std::int64_t ldy) {
  const std::int64_t K32 = K - K % 32;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K32; k += 32) {
    __m512bh wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * K + k);
    // One 64-byte line per weight row and step: fetch the next block's. The 8-row tiles of one or
    // two input rows stream each weight once, so their lines go to L2 (T1): fetched into L1 they
    // evicted the lines in use (the K = 1024 matrices' rows, 2 KB apart, share L1 sets) and those
    // matrices streamed at 70-78% of copy bandwidth; the 4 x 4 tiles reuse a block for every
    // 4 input rows and keep it in L1 (T0).
    if constexpr (NR == 8)
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(w + (NR + j) * K + k), _MM_HINT_T1);
    else if constexpr (NR >= 4)
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(w + (NR + j) * K + k), _MM_HINT_T0);
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  store_tile<std::uint16_t, std::uint16_t, MR, NR>(acc, x, w, y, K32, K, ldy);
}

// Without AVX-512 BF16: the odd elements are the high halves of the 32-bit words, the even
// ones the low halves shifted up; two FMAs per pair in the instruction's order.
template <int MR, int NR>
__attribute__((target("avx512f,fma"))) void tile_dp_avx512(const std::uint16_t* x, const std::uint16_t* w, float* y,
                                                           std::int64_t K, std::int64_t ldy) {
  const std::int64_t K32 = K - K % 32;
  const __m512i high = _mm512_set1_epi32(int(0xffff0000u));
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K32; k += 32) {
    __m512 wo[NR], we[NR];
    for (int j = 0; j < NR; ++j) {
      const __m512i bits = _mm512_loadu_si512(w + j * K + k);
      wo[j] = _mm512_castsi512_ps(_mm512_and_si512(bits, high));
      we[j] = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i bits = _mm512_loadu_si512(x + i * K + k);
      const __m512 xo = _mm512_castsi512_ps(_mm512_and_si512(bits, high));
      const __m512 xe = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xe, we[j], _mm512_fmadd_ps(xo, wo[j], acc[i][j]));
    }
  }
  store_tile<std::uint16_t, std::uint16_t, MR, NR>(acc, x, w, y, K32, K, ldy);
}
ALIGN2_INTRINSICS_END

template <int MR, int NR>
__attribute__((target("avx2,fma"))) void tile_dp_avx2(const std::uint16_t* x, const std::uint16_t* w, float* y,
                                                       std::int64_t K, std::int64_t ldy) {
  const std::int64_t K32 = K - K % 32;
  const __m256i high = _mm256_set1_epi32(int(0xffff0000u));
  __m256 acc[MR][NR][2];  // lanes 0-7 (k 0-15 of a step) and 8-15 (k 16-31)
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < K32; k += 32)
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < MR; ++i) {
        const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i * K + k + 16 * h));
        const __m256 xo = _mm256_castsi256_ps(_mm256_and_si256(xb, high));
        const __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(xb, 16));
        for (int j = 0; j < NR; ++j) {
          const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * K + k + 16 * h));
          const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(wb, high));
          const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(wb, 16));
          acc[i][j][h] = _mm256_fmadd_ps(xe, we, _mm256_fmadd_ps(xo, wo, acc[i][j][h]));
        }
      }
  alignas(32) float lanes[16];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      _mm256_store_ps(lanes, acc[i][j][0]);
      _mm256_store_ps(lanes + 8, acc[i][j][1]);
      y[i * ldy + j] = tail(reduce16(lanes), x + i * K, w + j * K, K32, K);
    }
}

// One output of the pair order, plainly: the scalar path and the reference.
inline float dot_pairs(const std::uint16_t* x, const std::uint16_t* w, std::int64_t K) {
  const std::int64_t K32 = K - K % 32;
  float lanes[16] = {};
  for (std::int64_t k = 0; k < K32; k += 32)
    for (int l = 0; l < 16; ++l) {
      lanes[l] = std::fma(widen(x, k + 2 * l + 1), widen(w, k + 2 * l + 1), lanes[l]);
      lanes[l] = std::fma(widen(x, k + 2 * l), widen(w, k + 2 * l), lanes[l]);
    }
  return tail(reduce16(lanes), x, w, K32, K);
}

void tile_dp_scalar(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t K, std::int64_t ldy, int mr,
                    int nr) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) y[i * ldy + j] = dot_pairs(x + i * K, w + j * K, K);
}

enum class Isa { avx512, avx2, scalar };

// The CPU's best path, or a slower one named by ALIGN2_LINEAR_ROWS_ISA (tests run every path
// on one machine; the results are the same by construction).
struct Paths {
  Isa isa = Isa::scalar;
  bool avx512bf16 = false;
};

Paths detect() {
  __builtin_cpu_init();
  Paths p;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    p.isa = Isa::avx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    p.isa = Isa::avx2;
  p.avx512bf16 = p.isa == Isa::avx512 && __builtin_cpu_supports("avx512bf16");
  const char* want = std::getenv("ALIGN2_LINEAR_ROWS_ISA");
  const std::string w = want ? want : "";
  if (w == "avx512" || w == "avx2" || w == "scalar") p.avx512bf16 = false;
  if ((w == "avx2" && p.isa == Isa::avx512) || w == "scalar") p.isa = w == "avx2" ? Isa::avx2 : Isa::scalar;
  return p;
}

const Paths& paths() {
  static const Paths chosen = detect();
  return chosen;
}

Isa isa() { return paths().isa; }

// The float32 tiles (results never depend on the tile: each output is its own fixed chain): up
// to 4 x 4 (AVX-512: 16 accumulators and 4 weight registers of the 32) or 2 x 2 (AVX2: 8 of the
// 16 registers hold the accumulator halves).
struct Tiles {
  using Tile = void (*)(const float*, const float*, float*, std::int64_t, std::int64_t);
  Tile avx512[4][4] = {
      {tile_avx512<1, 1>, tile_avx512<1, 2>, tile_avx512<1, 3>, tile_avx512<1, 4>},
      {tile_avx512<2, 1>, tile_avx512<2, 2>, tile_avx512<2, 3>, tile_avx512<2, 4>},
      {tile_avx512<3, 1>, tile_avx512<3, 2>, tile_avx512<3, 3>, tile_avx512<3, 4>},
      {tile_avx512<4, 1>, tile_avx512<4, 2>, tile_avx512<4, 3>, tile_avx512<4, 4>},
  };
  // One or two input rows (batch-1 decode is bound by the weights' bandwidth): 8 weight rows,
  // 8 or 16 independent accumulator chains to hide the FMA latency.
  Tile avx512_wide[2] = {tile_avx512<1, 8>, tile_avx512<2, 8>};
  Tile avx2[2][2] = {{tile_avx2<1, 1>, tile_avx2<1, 2>}, {tile_avx2<2, 1>, tile_avx2<2, 2>}};
};

void linear_rows(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                 std::int64_t ldy) {
  static const Tiles tiles;
  const Isa chosen = isa();
  const std::int64_t MR = chosen == Isa::avx512 ? 4 : 2, NR = chosen == Isa::avx512 ? 4 : 2;
  std::int64_t n = 0;
  if (chosen == Isa::avx512 && M <= 2)
    for (; n + 8 <= N; n += 8) tiles.avx512_wide[M - 1](x, w + n * K, y + n, K, ldy);
  // Weight-stationary: a block of NR weight rows (read from memory once) meets every input row.
  for (; n < N; n += NR) {
    const int nr = int(std::min(NR, N - n));
    for (std::int64_t m = 0; m < M; m += MR) {
      const int mr = int(std::min(MR, M - m));
      const float* xt = x + m * K;
      const float* wt = w + n * K;
      float* yt = y + m * ldy + n;
      switch (chosen) {
        case Isa::avx512: tiles.avx512[mr - 1][nr - 1](xt, wt, yt, K, ldy); break;
        case Isa::avx2: tiles.avx2[mr - 1][nr - 1](xt, wt, yt, K, ldy); break;
        case Isa::scalar: tile_scalar(xt, wt, yt, K, ldy, mr, nr); break;
      }
    }
  }
}

// bfloat16 x bfloat16: AVX-512 BF16 when the CPU has it, else the same order emulated.
bool has_avx512bf16() { return paths().avx512bf16; }

struct PairTiles {
  using Tile = void (*)(const std::uint16_t*, const std::uint16_t*, float*, std::int64_t, std::int64_t);
  Tile bf16[4][4] = {
      {tile_dp_avx512bf16<1, 1>, tile_dp_avx512bf16<1, 2>, tile_dp_avx512bf16<1, 3>, tile_dp_avx512bf16<1, 4>},
      {tile_dp_avx512bf16<2, 1>, tile_dp_avx512bf16<2, 2>, tile_dp_avx512bf16<2, 3>, tile_dp_avx512bf16<2, 4>},
      {tile_dp_avx512bf16<3, 1>, tile_dp_avx512bf16<3, 2>, tile_dp_avx512bf16<3, 3>, tile_dp_avx512bf16<3, 4>},
      {tile_dp_avx512bf16<4, 1>, tile_dp_avx512bf16<4, 2>, tile_dp_avx512bf16<4, 3>, tile_dp_avx512bf16<4, 4>},
  };
  Tile bf16_wide[2] = {tile_dp_avx512bf16<1, 8>, tile_dp_avx512bf16<2, 8>};
  Tile avx512[4][4] = {
      {tile_dp_avx512<1, 1>, tile_dp_avx512<1, 2>, tile_dp_avx512<1, 3>, tile_dp_avx512<1, 4>},
      {tile_dp_avx512<2, 1>, tile_dp_avx512<2, 2>, tile_dp_avx512<2, 3>, tile_dp_avx512<2, 4>},
      {tile_dp_avx512<3, 1>, tile_dp_avx512<3, 2>, tile_dp_avx512<3, 3>, tile_dp_avx512<3, 4>},
      {tile_dp_avx512<4, 1>, tile_dp_avx512<4, 2>, tile_dp_avx512<4, 3>, tile_dp_avx512<4, 4>},
  };
  Tile avx2[2][2] = {{tile_dp_avx2<1, 1>, tile_dp_avx2<1, 2>}, {tile_dp_avx2<2, 1>, tile_dp_avx2<2, 2>}};
};

void linear_rows_pairs(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t M, std::int64_t N,
                       std::int64_t K, std::int64_t ldy) {
  static const PairTiles tiles;
  const Isa chosen = isa();
  const bool bf16 = has_avx512bf16();
  const std::int64_t MR = chosen == Isa::avx512 ? 4 : 2, NR = chosen == Isa::avx512 ? 4 : 2;
  std::int64_t n = 0;
  if (bf16 && M <= 2)
    for (; n + 8 <= N; n += 8) tiles.bf16_wide[M - 1](x, w + n * K, y + n, K, ldy);
  for (; n < N; n += NR) {
    const int nr = int(std::min(NR, N - n));
    for (std::int64_t m = 0; m < M; m += MR) {
      const int mr = int(std::min(MR, M - m));
      const std::uint16_t* xt = x + m * K;
      const std::uint16_t* wt = w + n * K;
      float* yt = y + m * ldy + n;
      if (bf16)
        tiles.bf16[mr - 1][nr - 1](xt, wt, yt, K, ldy);
      else if (chosen == Isa::avx512)
        tiles.avx512[mr - 1][nr - 1](xt, wt, yt, K, ldy);
      else if (chosen == Isa::avx2)
        tiles.avx2[mr - 1][nr - 1](xt, wt, yt, K, ldy);
      else
        tile_dp_scalar(xt, wt, yt, K, ldy, mr, nr);
    }
  }
}

void linear_rows_reference(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                           std::int64_t ldy) {
  const std::int64_t K16 = K - K % 16;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float lanes[16] = {};
      for (std::int64_t k = 0; k < K16; ++k)
        lanes[k % 16] = std::fma(x[m * K + k], widen(w + n * K, k), lanes[k % 16]);
      y[m * ldy + n] = tail(reduce16(lanes), x + m * K, w + n * K, K16, K);
    }
}

}  // namespace

void linear_rows_f32(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                     std::int64_t ldy) {
  linear_rows(x, w, y, M, N, K, ldy);
}

void linear_rows_f32_reference(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N,
                               std::int64_t K, std::int64_t ldy) {
  linear_rows_reference(x, w, y, M, N, K, ldy);
}

void linear_rows_bf16_bf16(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t M, std::int64_t N,
                           std::int64_t K, std::int64_t ldy) {
  linear_rows_pairs(x, w, y, M, N, K, ldy);
}

void linear_rows_bf16_bf16_reference(const std::uint16_t* x, const std::uint16_t* w, float* y, std::int64_t M,
                                     std::int64_t N, std::int64_t K, std::int64_t ldy) {
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) y[m * ldy + n] = dot_pairs(x + m * K, w + n * K, K);
}

const char* linear_rows_bf16_bf16_isa() { return has_avx512bf16() ? "avx512bf16" : linear_rows_isa(); }

bool cpu_has_amx_bf16() {
  static const bool amx = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tiles = (d >> 22 & 1u) && (d >> 24 & 1u);  // AMX-BF16, AMX-TILE
    if (!tiles || !__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1u)) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo >> 17 & 3u) == 3u;  // XTILECFG and XTILEDATA state enabled by the OS
  }();
  return amx;
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
