#include "kernels/gemv.h"

#include <cstring>

namespace align2 {
namespace {

inline float bf16_to_float(std::uint16_t b) {
  std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Fixed reduction of the 16 lanes: pairwise, as a tree.
inline float reduce16(const float* a) {
  float b[8], c[4];
  for (int j = 0; j < 8; ++j) b[j] = a[j] + a[j + 8];
  for (int j = 0; j < 4; ++j) c[j] = b[j] + b[j + 4];
  return (c[0] + c[2]) + (c[1] + c[3]);
}

}  // namespace

// Compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one per CPU. Every
// lane is a separate multiply-then-add chain and gemv.cc is compiled without FMA
// contraction, so every variant rounds identically. (Interleaving several rows for more
// independent chains defeated GCC's vectorizer and ran 2.5x slower.)
__attribute__((target_clones("avx512f", "avx2", "default")))
void gemv_bf16(const std::uint16_t* w, const float* x, float* y, std::int64_t N, std::int64_t K) {
  const std::int64_t K16 = K - K % 16;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::uint16_t* row = w + n * K;
    float acc[16] = {};
    for (std::int64_t k = 0; k < K16; k += 16)
      for (int j = 0; j < 16; ++j) {
        std::uint32_t u = std::uint32_t(row[k + j]) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        acc[j] += f * x[k + j];
      }
    float sum = reduce16(acc);
    for (std::int64_t k = K16; k < K; ++k) sum += bf16_to_float(row[k]) * x[k];
    y[n] = sum;
  }
}

void gemv_bf16_reference(const std::uint16_t* w, const float* x, float* y, std::int64_t N, std::int64_t K) {
  const std::int64_t K16 = K - K % 16;
  for (std::int64_t n = 0; n < N; ++n) {
    float acc[16] = {};
    for (std::int64_t k = 0; k < K16; ++k) {
      volatile float product = bf16_to_float(w[n * K + k]) * x[k];  // no contraction into an FMA
      acc[k % 16] = acc[k % 16] + product;
    }
    float sum = reduce16(acc);
    for (std::int64_t k = K16; k < K; ++k) {
      volatile float product = bf16_to_float(w[n * K + k]) * x[k];
      sum = sum + product;
    }
    y[n] = sum;
  }
}

}  // namespace align2
