// kernels/linear_rows against its plain references over a sweep of shapes: bit-identical, and
// each row the same whatever the other rows of the batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/lanes.h"
#include "kernels/linear_rows.h"

namespace align2 {
namespace {

using lanes::to_bf16;

TEST(LinearRows, MatchesTheReferenceBitForBitAndRowsAreIndependent) {
  std::printf("linear_rows_f32 runs its %s path\n", linear_rows_isa());
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t M : {1, 2, 3, 5, 8, 32}) {
    for (std::int64_t N : {1, 3, 4, 7, 33}) {
      for (std::int64_t K : {1, 15, 16, 17, 100, 1024, 1031}) {
        const std::int64_t ldy = N + 3;
        std::vector<float> x(std::size_t(M * K)), w(std::size_t(N * K)), y(std::size_t(M * ldy), -7.0f),
            ref(std::size_t(M * ldy), -7.0f);
        for (auto& v : x) v = normal(rng);
        for (auto& v : w) v = normal(rng);
        linear_rows_f32(x.data(), w.data(), y.data(), M, N, K, ldy);
        linear_rows_f32_reference(x.data(), w.data(), ref.data(), M, N, K, ldy);
        ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0) << "M=" << M << " N=" << N << " K=" << K;
        for (std::int64_t m = 0; m < M; ++m) {
          for (std::int64_t n = N; n < ldy; ++n) ASSERT_EQ(y[std::size_t(m * ldy + n)], -7.0f);  // the row padding stays
          // A row alone gives what it gave in the batch; and the sum is close to a double one.
          std::vector<float> alone(static_cast<std::size_t>(N));
          linear_rows_f32(x.data() + m * K, w.data(), alone.data(), 1, N, K, N);
          ASSERT_EQ(std::memcmp(alone.data(), y.data() + m * ldy, std::size_t(N) * 4), 0) << "M=" << M << " m=" << m;
          for (std::int64_t n = 0; n < N; ++n) {
            double exact = 0;
            for (std::int64_t k = 0; k < K; ++k) exact += double(x[std::size_t(m * K + k)]) * w[std::size_t(n * K + k)];
            EXPECT_NEAR(y[std::size_t(m * ldy + n)], exact, 1e-5 * (1 + std::abs(exact)) * std::sqrt(double(K)));
          }
        }
      }
    }
  }
}

TEST(LinearRows, Bf16RowsTimesBf16WeightsMatchTheReferenceBitForBit) {
  std::printf("linear_rows_bf16_bf16 runs its %s path\n", linear_rows_bf16_bf16_isa());
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto widen = [](std::uint16_t b) { return lanes::from_bf16(b); };
  for (std::int64_t M : {1, 2, 3, 5, 8, 32}) {
    for (std::int64_t N : {1, 3, 4, 7, 9, 33}) {
      for (std::int64_t K : {1, 7, 31, 32, 33, 64, 100, 1024, 1031}) {
        const std::int64_t ldy = N + 2;
        std::vector<std::uint16_t> x(std::size_t(M * K)), w(std::size_t(N * K));
        std::vector<float> y(std::size_t(M * ldy), -7.0f), ref(std::size_t(M * ldy), -7.0f);
        for (auto& v : x) v = to_bf16(normal(rng));
        for (auto& v : w) v = to_bf16(normal(rng));
        linear_rows_bf16_bf16(x.data(), w.data(), y.data(), M, N, K, ldy);
        linear_rows_bf16_bf16_reference(x.data(), w.data(), ref.data(), M, N, K, ldy);
        ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0) << "M=" << M << " N=" << N << " K=" << K;
        for (std::int64_t m = 0; m < M; ++m) {
          for (std::int64_t n = N; n < ldy; ++n) ASSERT_EQ(y[std::size_t(m * ldy + n)], -7.0f);
          std::vector<float> alone(static_cast<std::size_t>(N));
          linear_rows_bf16_bf16(x.data() + m * K, w.data(), alone.data(), 1, N, K, N);
          ASSERT_EQ(std::memcmp(alone.data(), y.data() + m * ldy, std::size_t(N) * 4), 0) << "M=" << M << " m=" << m;
          for (std::int64_t n = 0; n < N; ++n) {
            double exact = 0, magnitude = 0;
            for (std::int64_t k = 0; k < K; ++k) {
              const double p = double(widen(x[std::size_t(m * K + k)])) * widen(w[std::size_t(n * K + k)]);
              exact += p;
              magnitude += std::abs(p);
            }
            EXPECT_NEAR(y[std::size_t(m * ldy + n)], exact, 2e-6 * magnitude + 1e-30);
          }
        }
      }
    }
  }
}

TEST(LinearRows, Bf16PairOrderIsTheDocumentedOne) {
  // Lane 0 takes k = 1, 0, 33, 32 in that order: 1e8 + 1 (lost: float32 cannot hold it), then
  // -1e8, then + 1 = 1; the even-first order would give 0. The tail adds k = 64, 65.
  const std::int64_t K = 66;
  std::vector<std::uint16_t> x(K, to_bf16(1.0f)), w(K, to_bf16(0.0f));
  w[1] = to_bf16(1e8f);
  w[0] = to_bf16(1.0f);
  w[33] = to_bf16(-1e8f);
  w[32] = to_bf16(1.0f);
  w[64] = to_bf16(0.5f);
  w[65] = to_bf16(0.25f);
  float y = -1, ref = -1;
  linear_rows_bf16_bf16(x.data(), w.data(), &y, 1, 1, K, 1);
  linear_rows_bf16_bf16_reference(x.data(), w.data(), &ref, 1, 1, K, 1);
  EXPECT_EQ(ref, 1.75f);
  EXPECT_EQ(y, ref);
}

TEST(LinearRows, SplittingOutputsDoesNotChangeResults) {
  const std::int64_t M = 6, N = 50, K = 333;
  std::vector<float> x(M * K), w(N * K), whole(M * N), parts(M * N);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(float(i));
  linear_rows_f32(x.data(), w.data(), whole.data(), M, N, K, N);
  linear_rows_f32(x.data(), w.data(), parts.data(), M, 7, K, N);
  linear_rows_f32(x.data(), w.data() + 7 * K, parts.data() + 7, M, N - 7, K, N);
  EXPECT_EQ(std::memcmp(whole.data(), parts.data(), M * N * 4), 0);
}

}  // namespace
}  // namespace align2
