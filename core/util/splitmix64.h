// splitmix64 (Steele, Lea, Flood 2014): the same stream on every platform. Every seeded draw
// of align2 (pairs, corruptions, initial weights, sampling, dropout masks) comes from it.
#pragma once

#include <cstdint>

namespace align2 {

// The first output of a stream seeded with `x`: a stateless 64-bit mix (draw k of seed s is
// splitmix64(splitmix64(s) ^ k) where a counter-based stream is wanted).
inline std::uint64_t splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct SplitMix64 {
  std::uint64_t state;
  explicit SplitMix64(std::uint64_t seed) : state(seed) {}
  std::uint64_t next() {
    const std::uint64_t out = splitmix64(state);
    state += 0x9e3779b97f4a7c15ULL;
    return out;
  }
  // Uniform in [0, n), n > 0, unbiased (rejection of the top values that would bias the modulo).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const std::uint64_t x = next();
      if (x >= limit) return x % n;
    }
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1), 53 bits
};

}  // namespace align2
