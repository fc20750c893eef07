// kernels/rms_norm, rope and decode_attention against their plain references over a sweep of
// shapes, in float32 and bfloat16: bit-identical (memcmp), the same however the work is split,
// never reading the cache past a sequence's length (NaN there), and close to an independent
// double-precision computation: float32 within ~1e-5 relative, bfloat16 within ~1e-2 relative
// (of the magnitudes each output is made of, where it is a difference or a weighted sum).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/decode_attention.h"
#include "kernels/lanes.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace align2 {
namespace {

using lanes::from_bf16;
using lanes::to_bf16;

// Buffers of the run dtype: float32 as is, bfloat16 as bit patterns.
double value(const std::vector<float>& v, std::size_t i) { return v[i]; }
double value(const std::vector<std::uint16_t>& v, std::size_t i) { return from_bf16(v[i]); }
void fill(std::vector<float>& v, std::mt19937& rng, float sigma) {
  std::normal_distribution<float> normal(0.0f, sigma);
  for (auto& x : v) x = normal(rng);
}
void fill(std::vector<std::uint16_t>& v, std::mt19937& rng, float sigma) {
  std::normal_distribution<float> normal(0.0f, sigma);
  for (auto& x : v) x = to_bf16(normal(rng));
}
float nan_of(float) { return std::numeric_limits<float>::quiet_NaN(); }
std::uint16_t nan_of(std::uint16_t) { return 0x7fc0; }
bool is_finite(const std::vector<float>& v, std::size_t i) { return std::isfinite(v[i]); }
bool is_finite(const std::vector<std::uint16_t>& v, std::size_t i) { return std::isfinite(from_bf16(v[i])); }
template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---- rms_norm
template <class T>
using RmsNorm = void (*)(const T*, const T*, T*, std::int64_t, std::int64_t, float);

template <class T>
void check_rms_norm(RmsNorm<T> kernel, RmsNorm<T> reference, double rel) {
  std::mt19937 rng(11);
  const float eps = 1e-5f;
  for (std::int64_t rows : {1, 2, 3, 5}) {
    for (std::int64_t n : {1, 15, 16, 17, 64, 1000, 1024}) {
      std::vector<T> x(std::size_t(rows * n)), w(static_cast<std::size_t>(n)), y(x.size()), ref(x.size());
      fill(x, rng, 2.0f);
      fill(w, rng, 1.0f);
      kernel(x.data(), w.data(), y.data(), rows, n, eps);
      reference(x.data(), w.data(), ref.data(), rows, n, eps);
      ASSERT_TRUE(same(y, ref)) << "rows=" << rows << " n=" << n;
      // In place; and row by row (a split of the rows).
      std::vector<T> inplace = x, split(x.size());
      kernel(inplace.data(), w.data(), inplace.data(), rows, n, eps);
      ASSERT_TRUE(same(inplace, ref)) << "in place, rows=" << rows << " n=" << n;
      for (std::int64_t r = 0; r < rows; ++r) kernel(x.data() + r * n, w.data(), split.data() + r * n, 1, n, eps);
      ASSERT_TRUE(same(split, ref)) << "split, rows=" << rows << " n=" << n;
      for (std::int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (std::int64_t k = 0; k < n; ++k) ss += value(x, std::size_t(r * n + k)) * value(x, std::size_t(r * n + k));
        const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
        for (std::int64_t k = 0; k < n; ++k) {
          const double exact = value(w, std::size_t(k)) * value(x, std::size_t(r * n + k)) * inv;
          ASSERT_NEAR(value(y, std::size_t(r * n + k)), exact, rel * std::abs(exact))
              << "rows=" << rows << " n=" << n << " r=" << r << " k=" << k;
        }
      }
    }
  }
}

TEST(RmsNorm, F32MatchesTheReferenceBitForBit) { check_rms_norm<float>(rms_norm_f32, rms_norm_f32_reference, 1e-5); }
TEST(RmsNorm, Bf16MatchesTheReferenceBitForBit) {
  check_rms_norm<std::uint16_t>(rms_norm_bf16, rms_norm_bf16_reference, 1e-2);
}

// ---- rope
template <class T>
using Rope = void (*)(T*, const std::int64_t*, const float*, std::int64_t, std::int64_t, std::int64_t);

template <class T>
void check_rope(Rope<T> kernel, Rope<T> reference, double rel) {
  std::mt19937 rng(13);
  for (std::int64_t rows : {1, 2, 5}) {
    for (std::int64_t heads : {1, 4, 16}) {
      for (std::int64_t hd : {2, 8, 34, 64, 128}) {
        const std::int64_t half = hd / 2;
        std::vector<float> inv_freq(static_cast<std::size_t>(half));
        for (std::int64_t i = 0; i < half; ++i)
          inv_freq[std::size_t(i)] = float(1.0 / std::pow(10000.0, double(2 * i) / double(hd)));
        std::vector<std::int64_t> positions(static_cast<std::size_t>(rows));
        std::uniform_int_distribution<std::int64_t> pos(0, 4000);
        for (std::int64_t r = 0; r < rows; ++r) positions[std::size_t(r)] = r == 0 ? 0 : pos(rng);
        std::vector<T> x(std::size_t(rows * heads * hd));
        fill(x, rng, 1.0f);
        std::vector<T> y = x, ref = x, split = x;
        kernel(y.data(), positions.data(), inv_freq.data(), rows, heads, hd);
        reference(ref.data(), positions.data(), inv_freq.data(), rows, heads, hd);
        ASSERT_TRUE(same(y, ref)) << "rows=" << rows << " heads=" << heads << " hd=" << hd;
        for (std::int64_t r = 0; r < rows; ++r)
          kernel(split.data() + r * heads * hd, positions.data() + r, inv_freq.data(), 1, heads, hd);
        ASSERT_TRUE(same(split, ref)) << "split, rows=" << rows << " heads=" << heads << " hd=" << hd;
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t h = 0; h < heads; ++h)
            for (std::int64_t i = 0; i < half; ++i) {
              // The angle is a float32 product by definition; its cos/sin and the rotation in double.
              const double angle = float(positions[std::size_t(r)]) * inv_freq[std::size_t(i)];
              const std::size_t at = std::size_t((r * heads + h) * hd + i);
              const double x1 = value(x, at), x2 = value(x, at + std::size_t(half));
              const double c = std::cos(angle), s = std::sin(angle), tol = rel * (std::abs(x1) + std::abs(x2));
              ASSERT_NEAR(value(y, at), x1 * c - x2 * s, tol) << "hd=" << hd << " r=" << r << " i=" << i;
              ASSERT_NEAR(value(y, at + std::size_t(half)), x2 * c + x1 * s, tol) << "hd=" << hd << " r=" << r;
            }
      }
    }
  }
}

TEST(Rope, F32MatchesTheReferenceBitForBit) { check_rope<float>(rope_f32, rope_f32_reference, 1e-5); }
TEST(Rope, Bf16MatchesTheReferenceBitForBit) { check_rope<std::uint16_t>(rope_bf16, rope_bf16_reference, 1e-2); }

// ---- decode_attention
template <class T>
using Attention = void (*)(const T*, const T*, const T*, const std::int64_t*, T*, std::int64_t, std::int64_t,
                           std::int64_t, std::int64_t, std::int64_t, float, std::int64_t, std::int64_t);

template <class T>
void check_attention(Attention<T> kernel, Attention<T> reference, double rel) {
  std::mt19937 rng(17);
  const std::int64_t longest[5] = {1, 16, 37, 300, 801};
  int combo = 0;
  for (std::int64_t hd : {2, 8, 64, 128}) {
    for (auto [heads, kv_heads] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {8, 4}, {16, 16}, {32, 8}}) {
      for (std::int64_t batch = 1; batch <= 5; ++batch, ++combo) {
        const std::int64_t most = longest[batch - 1], capacity = combo % 2 ? most + 5 : most;
        std::vector<std::int64_t> lengths(static_cast<std::size_t>(batch));
        std::uniform_int_distribution<std::int64_t> any(1, most);
        for (std::int64_t b = 0; b < batch; ++b)
          lengths[std::size_t(b)] = b % 3 == 0 ? capacity : b % 3 == 1 ? 1 : any(rng);
        lengths[0] = most;
        std::vector<T> q(std::size_t(batch * heads * hd)), k(std::size_t(batch * kv_heads * capacity * hd)), v(k.size());
        fill(q, rng, combo % 3 ? 1.0f : 3.0f);  // sharper softmax now and then
        fill(k, rng, 1.0f);
        fill(v, rng, 1.0f);
        // Garbage past each length: a read there would make the output NaN.
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t g = 0; g < kv_heads; ++g)
            for (std::int64_t j = lengths[std::size_t(b)]; j < capacity; ++j)
              for (std::int64_t d = 0; d < hd; ++d) {
                const std::size_t at = std::size_t(((b * kv_heads + g) * capacity + j) * hd + d);
                k[at] = v[at] = nan_of(T());
              }
        const std::int64_t items = batch * heads;
        const float scale = 1.0f / std::sqrt(float(hd));
        std::vector<T> out(q.size(), T(7)), ref(q.size(), T(7)), split(q.size(), T(7));
        kernel(q.data(), k.data(), v.data(), lengths.data(), out.data(), batch, heads, kv_heads, capacity, hd, scale, 0,
               items);
        reference(q.data(), k.data(), v.data(), lengths.data(), ref.data(), batch, heads, kv_heads, capacity, hd,
                  scale, 0, items);
        const std::string where = "hd=" + std::to_string(hd) + " heads=" + std::to_string(heads) + "/" +
                                  std::to_string(kv_heads) + " batch=" + std::to_string(batch) +
                                  " capacity=" + std::to_string(capacity);
        ASSERT_TRUE(same(out, ref)) << where;
        // Pieces of every size from 1 to 7 (cutting groups of heads anywhere); rows outside the
        // range stay untouched.
        std::uniform_int_distribution<std::int64_t> piece(1, 7);
        for (std::int64_t p = 0; p < items;) {
          const std::int64_t e = std::min(items, p + piece(rng));
          kernel(q.data(), k.data(), v.data(), lengths.data(), split.data(), batch, heads, kv_heads, capacity, hd,
                 scale, p, e);
          for (std::size_t i = std::size_t(e * hd); i < split.size(); ++i) ASSERT_EQ(split[i], T(7)) << where;
          p = e;
        }
        ASSERT_TRUE(same(split, ref)) << "split, " << where;
        // In double, from the same (widened) inputs.
        const std::int64_t rep = heads / kv_heads;
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t h = 0; h < heads; ++h) {
            const std::int64_t L = lengths[std::size_t(b)], g = h / rep, p = b * heads + h;
            std::vector<double> s(static_cast<std::size_t>(L));
            double m = -1e300, sum = 0;
            for (std::int64_t j = 0; j < L; ++j) {
              double dot = 0;
              for (std::int64_t d = 0; d < hd; ++d)
                dot += value(q, std::size_t(p * hd + d)) * value(k, std::size_t(((b * kv_heads + g) * capacity + j) * hd + d));
              s[std::size_t(j)] = dot * scale;
              m = std::max(m, s[std::size_t(j)]);
            }
            for (auto& e : s) sum += (e = std::exp(e - m));
            for (std::int64_t d = 0; d < hd; ++d) {
              double o = 0, size = 0;
              for (std::int64_t j = 0; j < L; ++j) {
                const double vj = value(v, std::size_t(((b * kv_heads + g) * capacity + j) * hd + d));
                o += s[std::size_t(j)] / sum * vj;
                size += s[std::size_t(j)] / sum * std::abs(vj);
              }
              const std::size_t at = std::size_t(p * hd + d);
              ASSERT_TRUE(is_finite(out, at)) << where << " b=" << b << " h=" << h << " d=" << d;
              ASSERT_NEAR(value(out, at), o, rel * size) << where << " b=" << b << " h=" << h << " d=" << d;
            }
          }
      }
    }
  }
}

TEST(DecodeAttention, F32MatchesTheReferenceBitForBit) {
  check_attention<float>(decode_attention_f32, decode_attention_f32_reference, 1e-5);
}
TEST(DecodeAttention, Bf16MatchesTheReferenceBitForBit) {
  check_attention<std::uint16_t>(decode_attention_bf16, decode_attention_bf16_reference, 1e-2);
}

}  // namespace
}  // namespace align2
