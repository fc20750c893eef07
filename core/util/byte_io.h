// Little-endian byte packing for messages that travel through Comm (index, scores).
// The reader bounds-checks every read and throws std::runtime_error when a buffer is short.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace align2 {

struct ByteWriter {
  std::vector<std::uint8_t> bytes;

  void u8(std::uint8_t v) { bytes.push_back(v); }
  void u32(std::uint32_t v) { raw(&v, 4); }
  void u64(std::uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void f64(double v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void raw(const void* p, std::size_t n) {  // host order = little-endian on every supported target
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
};

struct ByteReader {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos = 0;

  explicit ByteReader(const std::vector<std::uint8_t>& b) : data(b.data()), size(b.size()) {}

  std::uint8_t u8() { std::uint8_t v; raw(&v, 1); return v; }
  std::uint32_t u32() { std::uint32_t v; raw(&v, 4); return v; }
  std::uint64_t u64() { std::uint64_t v; raw(&v, 8); return v; }
  float f32() { float v; raw(&v, 4); return v; }
  double f64() { double v; raw(&v, 8); return v; }
  std::string str() {
    std::uint64_t n = u64();
    need(n);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }
  void raw(void* p, std::size_t n) {
    need(n);
    std::memcpy(p, data + pos, n);
    pos += n;
  }
  bool done() const { return pos == size; }

 private:
  void need(std::uint64_t n) const {
    if (n > size - pos) throw std::runtime_error("message truncated: need " + std::to_string(n) +
                                                 " bytes at " + std::to_string(pos) + " of " +
                                                 std::to_string(size));
  }
};

static_assert(sizeof(double) == 8, "IEEE double expected");

}  // namespace align2
