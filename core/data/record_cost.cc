#include "core/data/record_cost.h"

#include <limits>

namespace align2 {

std::uint64_t estimate_record_cost(std::uint64_t text_bytes, bool has_image, std::uint64_t image_cost) {
  const std::uint64_t text_tokens = text_bytes / 4 + (text_bytes % 4 != 0 ? 1 : 0);
  if (!has_image) return text_tokens;
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  return image_cost > max - text_tokens ? max : text_tokens + image_cost;
}

}  // namespace align2
