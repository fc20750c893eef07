// Fuzz target: image decoding and CLIP preprocessing from file bytes.
//   read_image_header and decode_rgb8 must decode or refuse with ImageError; a decoded image
//   has the size its header announced (WebP animation: the canvas) and width*height*3 bytes;
//   preprocess_rgb then gives float32 [3, size, size] whose every value lies in the range that
//   normalising 0..255 allows ((0 - mean) / std .. (1 - mean) / std per channel), and
//   preprocess_image on the bytes gives the same floats bit for bit.
//   The pixel bound is 1 Mpx here (64 Mpx in the product) so that each input runs fast; the
//   bound check itself is the same code.
// Seeds: test/fuzz/corpus/image/ (thumbnails of real photos of shared/data/images in every
// supported format, and small real images).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/model/image_preprocess.h"
#include "test/fuzz/fuzz_common.h"

using namespace align2;
using align2::fuzz::expect_clean_errors;

namespace {

constexpr const char* kTarget = "image";
constexpr std::uint64_t kMaxPixels = 1u << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ImageHeader header;
  const bool header_ok = expect_clean_errors(kTarget, [&] { header = read_image_header(data, size, "fuzz"); });
  RgbImage image;
  if (!expect_clean_errors(kTarget, [&] { image = decode_rgb8(data, size, "fuzz", kMaxPixels); })) return 0;
  FUZZ_CHECK(kTarget, header_ok, "decode_rgb8 accepted bytes whose header read_image_header refused");
  FUZZ_CHECK(kTarget, image.width > 0 && image.height > 0, "empty image decoded");
  FUZZ_CHECK(kTarget,
             image.pixels.size() == static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3,
             "pixel buffer size");
  FUZZ_CHECK(kTarget, header.width == image.width && header.height == image.height,
             header.format + ": header says " + std::to_string(header.width) + "x" + std::to_string(header.height) +
                 ", decoded " + std::to_string(image.width) + "x" + std::to_string(image.height));
  FUZZ_CHECK(kTarget, static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(image.height) <= kMaxPixels,
             "pixel bound not enforced");

  ImageSpec spec;
  spec.max_pixels = kMaxPixels;
  spec.aspect = size % 2 ? AspectMode::square : AspectMode::pad;
  spec.size = size % 3 == 0 ? 336 : 64;  // LLaVA-1.5's size, and a small one for speed
  const std::size_t plane = static_cast<std::size_t>(spec.size * spec.size);
  std::vector<float> out(3 * plane), again(3 * plane);
  if (!expect_clean_errors(kTarget, [&] { preprocess_rgb(image, spec, out.data()); })) {
    // Refused (too_large: the pad canvas of a long thin image): preprocess_image refuses it too.
    FUZZ_CHECK(kTarget, !expect_clean_errors(kTarget, [&] { preprocess_image(data, size, spec, again.data(), "fuzz"); }),
               "preprocess_image accepted what preprocess_rgb refused");
    return 0;
  }
  for (int c = 0; c < 3; ++c) {
    const float lo = (0.0f - spec.mean[c]) / spec.std[c], hi = (1.0f - spec.mean[c]) / spec.std[c];
    for (std::size_t i = 0; i < plane; ++i) {
      const float v = out[c * plane + i];
      FUZZ_CHECK(kTarget, std::isfinite(v) && v >= lo - 1e-5f && v <= hi + 1e-5f,
                 "channel " + std::to_string(c) + " value " + std::to_string(v));
    }
  }
  expect_clean_errors(kTarget, [&] { preprocess_image(data, size, spec, again.data(), "fuzz"); });
  FUZZ_CHECK(kTarget, std::memcmp(out.data(), again.data(), out.size() * sizeof(float)) == 0,
             "preprocess_image differs from decode_rgb8 + preprocess_rgb");
  return 0;
}
