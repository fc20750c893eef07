// SHA-256 (FIPS 180-4) over raw bytes. Used for record keys and fingerprints.
#pragma once

#include <cstddef>
#include <cstdint>

namespace align2 {

struct Sha256State {
  std::uint32_t h[8];
  std::uint64_t total_bytes;
  std::uint8_t block[64];  // pending bytes of the current 64-byte block
  std::size_t block_used;
};

void sha256_init(Sha256State* s);
// Absorbs `n` bytes at `data` (host memory).
void sha256_update(Sha256State* s, const void* data, std::size_t n);
// Writes the 32-byte digest to `out`; `s` must be re-initialised before reuse.
void sha256_final(Sha256State* s, std::uint8_t out[32]);

}  // namespace align2
