#include "kernels/rms_norm.h"
#include "kernels/lanes.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace align2 {
namespace {

using namespace lanes;

// The n % 16 tail of the sum of squares after its reduced lanes.
template <class T>
inline float tail(float sum, const T* x, std::int64_t n16, std::int64_t n) {
  for (std::int64_t k = n16; k < n; ++k) sum = std::fma(widen(x, k), widen(x, k), sum);
  return sum;
}

// 1 / rms, exactly so in every path.
inline float factor(float sum, std::int64_t n, float eps) {
  const float ms = sum / float(n);
  return 1.0f / std::sqrt(ms + eps);
}

// out[k] from x[k] (read before out[k] is written: out may be x).
template <class T>
inline void element(const T* x, const T* w, T* out, std::int64_t k, float inv) {
  const float h = rounded(x, widen(x, k) * inv);
  put(out, k, widen(w, k) * h);
}

// ---- AVX-512: 16 lanes in one register.
ALIGN2_INTRINSICS_BEGIN

template <class T>
__attribute__((target("avx512f,fma"))) void rms_norm_avx512(const T* x, const T* w, T* out, std::int64_t rows,
                                                              std::int64_t n, float eps) {
  const std::int64_t n16 = n - n % 16;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* o = out + r * n;
    __m512 acc = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < n16; k += 16) {
      const __m512 v = load16(xr + k);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    const float inv = factor(tail(reduce16(acc), xr, n16, n), n, eps);
    const __m512 iv = _mm512_set1_ps(inv);
    for (std::int64_t k = 0; k < n16; k += 16) {
      const __m512 h = rounded16(xr, _mm512_mul_ps(load16(xr + k), iv));
      store16(o + k, _mm512_mul_ps(load16(w + k), h));
    }
    for (std::int64_t k = n16; k < n; ++k) element(xr, w, o, k, inv);
  }
}

ALIGN2_INTRINSICS_END

// ---- The plain loop (also the path of CPUs without AVX-512).
template <class T>
void rms_norm_reference(const T* x, const T* w, T* out, std::int64_t rows, std::int64_t n, float eps) {
  const std::int64_t n16 = n - n % 16;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    float lanes[16] = {};
    for (std::int64_t k = 0; k < n16; ++k) lanes[k % 16] = std::fma(widen(xr, k), widen(xr, k), lanes[k % 16]);
    const float inv = factor(tail(reduce16(lanes), xr, n16, n), n, eps);
    for (std::int64_t k = 0; k < n; ++k) element(xr, w, out + r * n, k, inv);
  }
}

}  // namespace

void rms_norm_f32(const float* x, const float* w, float* out, std::int64_t rows, std::int64_t n, float eps) {
  if (have_avx512())
    rms_norm_avx512(x, w, out, rows, n, eps);
  else
    rms_norm_reference(x, w, out, rows, n, eps);
}

void rms_norm_f32_reference(const float* x, const float* w, float* out, std::int64_t rows, std::int64_t n,
                            float eps) {
  rms_norm_reference(x, w, out, rows, n, eps);
}

void rms_norm_bf16(const std::uint16_t* x, const std::uint16_t* w, std::uint16_t* out, std::int64_t rows,
                   std::int64_t n, float eps) {
  if (have_avx512())
    rms_norm_avx512(x, w, out, rows, n, eps);
  else
    rms_norm_reference(x, w, out, rows, n, eps);
}

void rms_norm_bf16_reference(const std::uint16_t* x, const std::uint16_t* w, std::uint16_t* out, std::int64_t rows,
                             std::int64_t n, float eps) {
  rms_norm_reference(x, w, out, rows, n, eps);
}

}  // namespace align2
