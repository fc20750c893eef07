// SHA-256 and digests as text (lowercase hex). Record keys, fingerprints, chunk checksums and
// cache names are all written through these. SHA-256 is OpenSSL libcrypto's, which uses the
// CPU's SHA extensions where present (about 2 GB/s a core, against 0.27 for a portable C loop:
// docs/architecture.md, "Written by hand, or a library").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>


struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX (openssl/evp.h stays in digest.cc)

namespace align2 {

// Lowercase hex of bytes[0, n): 2n characters.
std::string to_hex(const std::uint8_t* bytes, std::size_t n);

// The n bytes that 2n lowercase hex characters spell; false (out untouched past the first bad
// pair) when `text` is not exactly that.
bool from_hex(std::string_view text, std::uint8_t* out, std::size_t n);

// An incremental SHA-256 (FIPS 180-4): the one owner of a libcrypto digest context.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Absorbs n bytes at `data` (host memory).
  void update(const void* data, std::size_t n);
  void update(std::string_view text) { update(text.data(), text.size()); }
  // Writes the 32-byte digest to `out` and starts over (an empty message).
  void final(std::uint8_t out[32]);
  // The first `bytes` (1..32) bytes of the digest as hex; starts over.
  std::string hex(std::size_t bytes = 32);

 private:
  void restart();
  ::evp_md_ctx_st* ctx_;  // owned
};

// SHA-256 of `data` into out[32] (a context kept per thread: no allocation per call).
void sha256(std::string_view data, std::uint8_t out[32]);
// SHA-256 of `data`, its first `bytes` bytes as hex.
std::string sha256_hex(std::string_view data, std::size_t bytes = 32);

}  // namespace align2
