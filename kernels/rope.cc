#include "kernels/rope.h"
#include "kernels/lanes.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace align2 {
namespace {

using namespace lanes;

// One row's cos/sin table: cs[i] = round_T(cos(angle_i)), cs[half + i] = round_T(sin(angle_i)).
//   cs: float32 [2 * half].
template <class T>
void angles(const T* x, std::int64_t position, const float* inv_freq, std::int64_t half, float* cs) {
  for (std::int64_t i = 0; i < half; ++i) {
    const float angle = float(position) * inv_freq[i];
    cs[i] = rounded(x, std::cos(angle));
    cs[half + i] = rounded(x, std::sin(angle));
  }
}

// Pair i of one head xh [head_dim], with c = cs[i], s = cs[half + i].
template <class T>
inline void rotate(T* xh, const float* cs, std::int64_t half, std::int64_t i) {
  const float x1 = widen(xh, i), x2 = widen(xh, i + half), c = cs[i], s = cs[half + i];
  put(xh, i, rounded(xh, x1 * c) - rounded(xh, x2 * s));
  put(xh, i + half, rounded(xh, x2 * c) + rounded(xh, x1 * s));
}

// A small table on the stack for head_dim <= 512, else on the heap (once per call).
struct Table {
  float stack[512];
  std::vector<float> heap;
  float* get(std::int64_t half) {
    if (2 * half <= 512) return stack;
    heap.resize(std::size_t(2 * half));
    return heap.data();
  }
};

// ---- AVX-512: 16 pairs per step.
ALIGN2_INTRINSICS_BEGIN

template <class T>
__attribute__((target("avx512f"))) void rope_avx512(T* x, const std::int64_t* positions, const float* inv_freq,
                                                      std::int64_t rows, std::int64_t heads, std::int64_t head_dim) {
  const std::int64_t half = head_dim / 2, half16 = half - half % 16;
  Table table;
  float* cs = table.get(half);
  for (std::int64_t r = 0; r < rows; ++r) {
    angles(x, positions[r], inv_freq, half, cs);
    for (std::int64_t h = 0; h < heads; ++h) {
      T* xh = x + (r * heads + h) * head_dim;
      for (std::int64_t i = 0; i < half16; i += 16) {
        const __m512 x1 = load16(xh + i), x2 = load16(xh + half + i);
        const __m512 c = _mm512_loadu_ps(cs + i), s = _mm512_loadu_ps(cs + half + i);
        const __m512 a = _mm512_sub_ps(rounded16(xh, _mm512_mul_ps(x1, c)), rounded16(xh, _mm512_mul_ps(x2, s)));
        const __m512 b = _mm512_add_ps(rounded16(xh, _mm512_mul_ps(x2, c)), rounded16(xh, _mm512_mul_ps(x1, s)));
        store16(xh + i, a);
        store16(xh + half + i, b);
      }
      for (std::int64_t i = half16; i < half; ++i) rotate(xh, cs, half, i);
    }
  }
}

ALIGN2_INTRINSICS_END

// ---- The plain loop (also the path of CPUs without AVX-512).
template <class T>
void rope_reference(T* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
                    std::int64_t heads, std::int64_t head_dim) {
  const std::int64_t half = head_dim / 2;
  Table table;
  float* cs = table.get(half);
  for (std::int64_t r = 0; r < rows; ++r) {
    angles(x, positions[r], inv_freq, half, cs);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < half; ++i) rotate(x + (r * heads + h) * head_dim, cs, half, i);
  }
}

}  // namespace

void rope_f32(float* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows, std::int64_t heads,
              std::int64_t head_dim) {
  if (have_avx512())
    rope_avx512(x, positions, inv_freq, rows, heads, head_dim);
  else
    rope_reference(x, positions, inv_freq, rows, heads, head_dim);
}

void rope_f32_reference(float* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
                        std::int64_t heads, std::int64_t head_dim) {
  rope_reference(x, positions, inv_freq, rows, heads, head_dim);
}

void rope_bf16(std::uint16_t* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
               std::int64_t heads, std::int64_t head_dim) {
  if (have_avx512())
    rope_avx512(x, positions, inv_freq, rows, heads, head_dim);
  else
    rope_reference(x, positions, inv_freq, rows, heads, head_dim);
}

void rope_bf16_reference(std::uint16_t* x, const std::int64_t* positions, const float* inv_freq, std::int64_t rows,
                         std::int64_t heads, std::int64_t head_dim) {
  rope_reference(x, positions, inv_freq, rows, heads, head_dim);
}

}  // namespace align2
