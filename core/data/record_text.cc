#include "core/data/record_text.h"

#include <cstdint>

namespace align2 {
namespace {

// Python's str.isspace() for one code point.
bool is_python_space(std::uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the UTF-8 character of `len` bytes at `p` (structure not re-checked: the
// callers only ask whether it is one of the spaces above, all well-formed).
std::uint32_t code_point(const unsigned char* p, std::size_t len) {
  switch (len) {
    case 1: return p[0];
    case 2: return (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu);
    case 3: return (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
    default: return (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
  }
}

std::size_t lead_length(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 0;  // not a lead byte
}

}  // namespace

std::size_t count_image_tags(std::string_view text) {
  std::size_t n = 0;
  for (std::size_t p = text.find(kImageTag); p != std::string_view::npos; p = text.find(kImageTag, p + 1)) ++n;
  return n;
}

std::string with_image_line(std::string_view text) {
  std::string out(kImageTag);
  out += '\n';
  out += text;
  return out;
}

std::string remove_image_tags(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, kImageTag.size(), kImageTag) == 0) {
      i += kImageTag.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string python_strip(std::string_view text) {
  const auto* data = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t begin = 0, end = text.size();
  while (begin < end) {
    const std::size_t len = lead_length(data[begin]);
    if (len == 0 || begin + len > end || !is_python_space(code_point(data + begin, len))) break;
    begin += len;
  }
  while (end > begin) {
    std::size_t start = end - 1;  // back over continuation bytes to the lead byte
    while (start > begin && (data[start] & 0xC0) == 0x80 && end - start < 4) --start;
    const std::size_t len = lead_length(data[start]);
    if (len != end - start || !is_python_space(code_point(data + start, len))) break;
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

std::string text_without_image(std::string_view text) { return python_strip(remove_image_tags(text)); }

}  // namespace align2
