#include "core/util/digest.h"

#include <stdexcept>

namespace align2 {

std::string to_hex(const std::uint8_t* bytes, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

bool from_hex(std::string_view text, std::uint8_t* out, std::size_t n) {
  if (text.size() != 2 * n) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = std::uint8_t(hi * 16 + lo);
  }
  return true;
}

std::string sha256_hex(Sha256State* state, std::size_t bytes) {
  if (bytes < 1 || bytes > 32) throw std::logic_error("sha256_hex: a digest has 1..32 bytes");
  std::uint8_t digest[32];
  sha256_final(state, digest);
  return to_hex(digest, bytes);
}

std::string sha256_hex(std::string_view data, std::size_t bytes) {
  Sha256State state;
  sha256_init(&state);
  sha256_update(&state, data.data(), data.size());
  return sha256_hex(&state, bytes);
}

}  // namespace align2
