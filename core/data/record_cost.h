// What a record costs to score, for balancing shards (distributed/shard_plan.h) and bounding
// batches: an estimate in "token" units, read off the record at indexing time.
#pragma once

#include <cstdint>

namespace align2 {

// Text tokens ~ ceil(text_bytes / 4), plus `image_cost` when the record has an image.
// Saturates at UINT64_MAX instead of wrapping.
std::uint64_t estimate_record_cost(std::uint64_t text_bytes, bool has_image, std::uint64_t image_cost);

}  // namespace align2
