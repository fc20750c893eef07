#include "kernels/decode_attention.h"
#include "kernels/lanes.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace align2 {
namespace {

using namespace lanes;

// e^x, Cephes' expf: x clamped to [-87.33654, 88] (e^x >= 2^-126: a softmax weight that small
// changes nothing); n = x log2(e) rounded to nearest by adding and taking away 1.5 * 2^23;
// r = x - n ln 2 in two parts (n * 0.693359375 is exact); e^r by its polynomial; times 2^n made
// from the exponent bits. Mul then add throughout (this file has no contraction), step for step
// as exp16 below does it.
const float kExpLo = -87.33654f, kExpHi = 88.0f, kLog2e = 1.44269504088896341f, kRound = 12582912.0f,
            kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
const float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                        4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

inline float exp_poly(float x) {
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = (x * kLog2e + kRound) - kRound;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpP[0];
  for (int i = 1; i < 6; ++i) p = p * r + kExpP[i];
  const float y = (p * (r * r) + r) + 1.0f;
  const std::uint32_t bits = std::uint32_t(int(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return y * two_n;
}

// The head_dim % 16 tail of a dot product after its reduced lanes.
//   q: float32 [hd]; k: T [hd].
template <class T>
inline float dot_tail(float sum, const float* q, const T* k, std::int64_t hd16, std::int64_t hd) {
  for (std::int64_t d = hd16; d < hd; ++d) sum = std::fma(q[d], widen(k, d), sum);
  return sum;
}

// The L % 16 tail of the softmax: e_j = exp(s_j - m) written over s_j and added to sum in order.
//   s: float32 [L].
inline float exp_tail(float sum, float* s, float m, std::int64_t L16, std::int64_t L) {
  for (std::int64_t j = L16; j < L; ++j) {
    s[j] = exp_poly(s[j] - m);
    sum += s[j];
  }
  return sum;
}

// ---- AVX-512: 16 lanes in one register.
ALIGN2_INTRINSICS_BEGIN
// exp_poly on 16 lanes, step for step.
__attribute__((target("avx512f"))) inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  const __m512 round = _mm512_set1_ps(kRound);
  const __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), round), round);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Hi)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Lo)));
  __m512 p = _mm512_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(kExpP[i]));
  const __m512 y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

// s[j] = softmax weight p_j, in place. s: float32 [L].
__attribute__((target("avx512f"))) void softmax_avx512(float* s, std::int64_t L) {
  const std::int64_t L16 = L - L % 16;
  float m = s[0];
  if (L16) {
    __m512 vm = _mm512_loadu_ps(s);
    for (std::int64_t j = 16; j < L16; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + j));
    m = _mm512_reduce_max_ps(vm);
  }
  for (std::int64_t j = L16; j < L; ++j) m = std::max(m, s[j]);
  const __m512 vmax = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (std::int64_t j = 0; j < L16; j += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmax));
    _mm512_storeu_ps(s + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  const float inv = 1.0f / exp_tail(reduce16(acc), s, m, L16, L);
  const __m512 vinv = _mm512_set1_ps(inv);
  for (std::int64_t j = 0; j < L16; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), vinv));
  for (std::int64_t j = L16; j < L; ++j) s[j] = s[j] * inv;
}

// o = sum_j p[j] * v_j over NC * 16 columns of one head: NC accumulators in registers, each a
// chain in j order; the row `ahead` rows further on is fetched early (never past L).
// p: float32 [L]; v: T rows of stride hd, [L, NC * 16]; out: T [NC * 16].
template <class T, int NC>
__attribute__((target("avx512f,fma"))) void weighted_sum(const float* p, const T* v, T* out, std::int64_t L,
                                                           std::int64_t hd, std::int64_t ahead) {
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
  for (std::int64_t j = 0; j < L; ++j) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    if (j + ahead < L)
      for (int c = 0; c < NC; c += 64 / (16 * int(sizeof(T))))
        _mm_prefetch(reinterpret_cast<const char*>(v + (j + ahead) * hd + 16 * c), _MM_HINT_T0);
    for (int c = 0; c < NC; ++c) acc[c] = _mm512_fmadd_ps(pj, load16(v + j * hd + 16 * c), acc[c]);
  }
  for (int c = 0; c < NC; ++c) store16(out + 16 * c, acc[c]);
}

// Items [begin, end), the heads of a kv head together: scores for all of them from one pass over
// K (each K row read from memory once), then softmax and the values per head.
template <class T>
__attribute__((target("avx512f,fma"))) void attention_avx512(const T* q, const T* k_cache, const T* v_cache,
                                                               const std::int64_t* lengths, T* out,
                                                               std::int64_t heads, std::int64_t kv_heads,
                                                               std::int64_t capacity, std::int64_t hd, float scale,
                                                               std::int64_t begin, std::int64_t end) {
  const std::int64_t rep = heads / kv_heads, hd16 = hd - hd % 16;
  // Rows fetched ~4 KB ahead of use: float32 caches larger than the last-level cache ran 10-30%
  // faster so (bench/decode_kernels_bench, 2 threads); bfloat16 about the same.
  const std::int64_t ahead = std::max<std::int64_t>(1, 4096 / (hd * std::int64_t(sizeof(T))));
  // scores: float32 [rep, capacity]; qf: the group's queries as float32 [rep, hd].
  std::vector<float> scratch(std::size_t(rep * (capacity + hd)));
  float* scores = scratch.data();
  float* qf = scores + rep * capacity;
  for (std::int64_t p = begin; p < end;) {
    const std::int64_t b = p / heads, h = p % heads, g = h / rep, nr = std::min((g + 1) * rep - h, end - p);
    const std::int64_t L = lengths[b];
    const T* K = k_cache + (b * kv_heads + g) * capacity * hd;
    const T* V = v_cache + (b * kv_heads + g) * capacity * hd;
    for (std::int64_t i = 0; i < nr * hd; ++i) qf[i] = widen(q + p * hd, i);
    for (std::int64_t j = 0; j < L; ++j) {
      const T* kj = K + j * hd;
      if (j + ahead < L)
        for (std::int64_t l = 0; l < hd * std::int64_t(sizeof(T)); l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(kj + ahead * hd) + l, _MM_HINT_T0);
      for (std::int64_t r = 0; r < nr; ++r) {
        const float* qr = qf + r * hd;
        __m512 acc = _mm512_setzero_ps();
        for (std::int64_t d = 0; d < hd16; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + d), load16(kj + d), acc);
        scores[r * capacity + j] = dot_tail(reduce16(acc), qr, kj, hd16, hd) * scale;
      }
    }
    for (std::int64_t r = 0; r < nr; ++r) {
      float* s = scores + r * capacity;
      softmax_avx512(s, L);
      T* o = out + (p + r) * hd;
      std::int64_t d = 0;
      for (; d + 128 <= hd16; d += 128) weighted_sum<T, 8>(s, V + d, o + d, L, hd, ahead);
      for (; d + 64 <= hd16; d += 64) weighted_sum<T, 4>(s, V + d, o + d, L, hd, ahead);
      for (; d < hd16; d += 16) weighted_sum<T, 1>(s, V + d, o + d, L, hd, ahead);
      for (; d < hd; ++d) {
        float sum = 0.0f;
        for (std::int64_t j = 0; j < L; ++j) sum = std::fma(s[j], widen(V + j * hd, d), sum);
        put(o, d, sum);
      }
    }
    p += nr;
  }
}

ALIGN2_INTRINSICS_END

// ---- The plain loop (also the path of CPUs without AVX-512).
template <class T>
void attention_reference(const T* q, const T* k_cache, const T* v_cache, const std::int64_t* lengths, T* out,
                         std::int64_t heads, std::int64_t kv_heads, std::int64_t capacity, std::int64_t hd,
                         float scale, std::int64_t begin, std::int64_t end) {
  const std::int64_t rep = heads / kv_heads, hd16 = hd - hd % 16;
  // s: float32 [capacity] (scores, then weights); qf: float32 [hd].
  std::vector<float> scratch(std::size_t(capacity + hd));
  float* s = scratch.data();
  float* qf = s + capacity;
  for (std::int64_t p = begin; p < end; ++p) {
    const std::int64_t b = p / heads, g = (p % heads) / rep, L = lengths[b];
    const T* K = k_cache + (b * kv_heads + g) * capacity * hd;
    const T* V = v_cache + (b * kv_heads + g) * capacity * hd;
    for (std::int64_t d = 0; d < hd; ++d) qf[d] = widen(q + p * hd, d);
    for (std::int64_t j = 0; j < L; ++j) {
      float lanes[16] = {};
      for (std::int64_t d = 0; d < hd16; ++d) lanes[d % 16] = std::fma(qf[d], widen(K + j * hd, d), lanes[d % 16]);
      s[j] = dot_tail(reduce16(lanes), qf, K + j * hd, hd16, hd) * scale;
    }
    float m = s[0];
    for (std::int64_t j = 1; j < L; ++j) m = std::max(m, s[j]);
    const std::int64_t L16 = L - L % 16;
    float lanes[16] = {};
    for (std::int64_t j = 0; j < L16; ++j) {
      s[j] = exp_poly(s[j] - m);
      lanes[j % 16] += s[j];
    }
    const float inv = 1.0f / exp_tail(reduce16(lanes), s, m, L16, L);
    for (std::int64_t j = 0; j < L; ++j) s[j] = s[j] * inv;
    for (std::int64_t d = 0; d < hd; ++d) {
      float sum = 0.0f;
      for (std::int64_t j = 0; j < L; ++j) sum = std::fma(s[j], widen(V + j * hd, d), sum);
      put(out + p * hd, d, sum);
    }
  }
}

}  // namespace

void decode_attention_f32(const float* q, const float* k_cache, const float* v_cache, const std::int64_t* lengths,
                          float* out, std::int64_t batch, std::int64_t heads, std::int64_t kv_heads,
                          std::int64_t capacity, std::int64_t head_dim, float scale, std::int64_t begin,
                          std::int64_t end) {
  if (have_avx512())
    attention_avx512(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
  else
    attention_reference(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
}

void decode_attention_f32_reference(const float* q, const float* k_cache, const float* v_cache,
                                    const std::int64_t* lengths, float* out, std::int64_t batch, std::int64_t heads,
                                    std::int64_t kv_heads, std::int64_t capacity, std::int64_t head_dim, float scale,
                                    std::int64_t begin, std::int64_t end) {
  attention_reference(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
}

void decode_attention_bf16(const std::uint16_t* q, const std::uint16_t* k_cache, const std::uint16_t* v_cache,
                           const std::int64_t* lengths, std::uint16_t* out, std::int64_t batch, std::int64_t heads,
                           std::int64_t kv_heads, std::int64_t capacity, std::int64_t head_dim, float scale,
                           std::int64_t begin, std::int64_t end) {
  if (have_avx512())
    attention_avx512(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
  else
    attention_reference(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
}

void decode_attention_bf16_reference(const std::uint16_t* q, const std::uint16_t* k_cache,
                                     const std::uint16_t* v_cache, const std::int64_t* lengths, std::uint16_t* out,
                                     std::int64_t batch, std::int64_t heads, std::int64_t kv_heads,
                                     std::int64_t capacity, std::int64_t head_dim, float scale, std::int64_t begin,
                                     std::int64_t end) {
  attention_reference(q, k_cache, v_cache, lengths, out, heads, kv_heads, capacity, head_dim, scale, begin, end);
}

}  // namespace align2
