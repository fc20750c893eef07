// Digests as text: lowercase hex, and SHA-256 (kernels/sha256.h) straight to hex. Record keys,
// fingerprints, chunk checksums and cache names are all written through these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/sha256.h"

namespace align2 {

// Lowercase hex of bytes[0, n): 2n characters.
std::string to_hex(const std::uint8_t* bytes, std::size_t n);

// The n bytes that 2n lowercase hex characters spell; false (out untouched past the first bad
// pair) when `text` is not exactly that.
bool from_hex(std::string_view text, std::uint8_t* out, std::size_t n);

// Finalises `state` and returns the first `bytes` (1..32) bytes of its digest as hex; the
// state must be re-initialised before reuse.
std::string sha256_hex(Sha256State* state, std::size_t bytes = 32);
// SHA-256 of `data`, its first `bytes` bytes as hex.
std::string sha256_hex(std::string_view data, std::size_t bytes = 32);

}  // namespace align2
