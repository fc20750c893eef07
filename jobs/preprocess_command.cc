// align2 preprocess: images -> pixel_values [N, 3, size, size] float32 in a .safetensors
// file, as LLaVA-1.5 feeds its CLIP vision tower (core/model/image_preprocess.h: exact to PIL
// after decoding; JPEG decoding can differ from libjpeg-turbo by a few levels).
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/model/image_preprocess.h"
#include "core/model/safetensors.h"
#include "jobs/cli.h"

namespace align2::cli {

int run_preprocess(const Args& args) {
  if (args.positional.empty()) throw UsageError("give at least one IMAGE");
  const std::string out = args.get("out");
  if (out.empty()) throw UsageError("--out is required");
  ImageSpec spec;
  try {
    spec.aspect = aspect_mode_from_name(args.get("aspect", "pad"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--aspect: {}", e.what()));
  }
  spec.size = int_option(args, "size", 336, 1, 16384);
  spec.max_pixels = std::uint64_t(int_option(args, "max-pixels", 64'000'000, 1, INT64_MAX));

  const std::size_t n = args.positional.size();
  const std::size_t per_image = static_cast<std::size_t>(3 * spec.size * spec.size);  // floats
  std::vector<float> values(n * per_image);  // [N, 3, size, size]
  for (std::size_t i = 0; i < n; ++i) {
    try {
      preprocess_image_file(args.positional[i], spec, values.data() + i * per_image);
    } catch (const ImageError& e) {
      // what() already names the file; the reason code is for scripts.
      throw std::runtime_error(fmt::format("image {} of {}: {} [{}]", i + 1, n, e.what(), e.reason_code));
    }
  }
  const std::map<std::string, std::string> metadata = {
      {"aspect", aspect_mode_name(spec.aspect)},
      {"size", std::to_string(spec.size)},
      {"images", nlohmann::json(args.positional).dump()},
  };
  write_safetensors(out, {float_tensor("pixel_values", {static_cast<std::int64_t>(n), 3, spec.size, spec.size}, values)},
                    metadata);
  std::cout << fmt::format("{}: pixel_values [{}, 3, {}, {}] float32, aspect {}\n", out, n, spec.size, spec.size,
                           aspect_mode_name(spec.aspect));
  return 0;
}

}  // namespace align2::cli
