#include "core/util/digest.h"

#include <openssl/evp.h>

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

namespace {

// The SHA-256 implementation, fetched once (an implicit fetch per EVP_DigestInit_ex would
// look it up in the provider store every time).
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (!md) throw std::runtime_error("OpenSSL libcrypto has no SHA256 digest (EVP_MD_fetch failed)");
  return md;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_) throw std::bad_alloc();
  restart();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::restart() {
  if (EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) != 1) throw std::runtime_error("SHA-256: EVP_DigestInit_ex failed");
}

void Sha256::update(const void* data, std::size_t n) {
  if (n && EVP_DigestUpdate(ctx_, data, n) != 1) throw std::runtime_error("SHA-256: EVP_DigestUpdate failed");
}

void Sha256::final(std::uint8_t out[32]) {
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out, &len) != 1 || len != 32) throw std::runtime_error("SHA-256: EVP_DigestFinal_ex failed");
  restart();
}

std::string Sha256::hex(std::size_t bytes) {
  if (bytes < 1 || bytes > 32) throw std::logic_error("Sha256::hex: a digest has 1..32 bytes");
  std::uint8_t digest[32];
  final(digest);
  return to_hex(digest, bytes);
}

void sha256(std::string_view data, std::uint8_t out[32]) {
  thread_local Sha256 hasher;
  hasher.update(data);
  hasher.final(out);
}

std::string sha256_hex(std::string_view data, std::size_t bytes) {
  if (bytes < 1 || bytes > 32) throw std::logic_error("sha256_hex: a digest has 1..32 bytes");
  std::uint8_t digest[32];
  sha256(data, digest);
  return to_hex(digest, bytes);
}

}  // namespace align2
