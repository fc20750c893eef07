// kernels/gemv and kernels/linear_rows against their plain references over a sweep of shapes:
// bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gemv.h"
#include "kernels/linear_rows.h"

namespace align2 {
namespace {

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return std::uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);  // round to nearest even
}

TEST(Gemv, Bf16MatchesTheReferenceBitForBit) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t N : {1, 3, 17, 64}) {
    for (std::int64_t K : {1, 15, 16, 17, 100, 1024, 1031}) {
      std::vector<std::uint16_t> w(static_cast<std::size_t>(N * K));
      std::vector<float> x(static_cast<std::size_t>(K)), y(static_cast<std::size_t>(N)), ref(static_cast<std::size_t>(N));
      for (auto& v : w) v = to_bf16(normal(rng));
      for (auto& v : x) v = normal(rng);
      gemv_bf16(w.data(), x.data(), y.data(), N, K);
      gemv_bf16_reference(w.data(), x.data(), ref.data(), N, K);
      for (std::int64_t n = 0; n < N; ++n) {
        ASSERT_EQ(std::memcmp(&y[std::size_t(n)], &ref[std::size_t(n)], 4), 0) << "N=" << N << " K=" << K << " n=" << n;
        // And close to a double-precision dot product.
        double exact = 0;
        for (std::int64_t k = 0; k < K; ++k) {
          std::uint32_t u = std::uint32_t(w[std::size_t(n * K + k)]) << 16;
          float f;
          std::memcpy(&f, &u, 4);
          exact += double(f) * x[std::size_t(k)];
        }
        EXPECT_NEAR(y[std::size_t(n)], exact, 1e-4 * (1 + std::abs(exact)) * std::sqrt(double(K)));
      }
    }
  }
}

TEST(Gemv, SplittingRowsDoesNotChangeResults) {
  const std::int64_t N = 50, K = 333;
  std::vector<std::uint16_t> w(N * K);
  std::vector<float> x(K), whole(N), parts(N);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = to_bf16(std::sin(float(i)));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(float(i));
  gemv_bf16(w.data(), x.data(), whole.data(), N, K);
  gemv_bf16(w.data(), x.data(), parts.data(), 7, K);
  gemv_bf16(w.data() + 7 * K, x.data(), parts.data() + 7, N - 7, K);
  EXPECT_EQ(std::memcmp(whole.data(), parts.data(), N * 4), 0);
}

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
