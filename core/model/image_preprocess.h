// Image preprocessing for the CLIP vision tower, from file bytes to pixel_values, as
// LLaVA-1.5 does it: Image.open(path).convert('RGB'), then for image_aspect_ratio "pad"
// expand2square (llava/mm_utils.py) with the CLIP mean colour, then transformers'
// CLIPImageProcessor: resize the shortest side to `size` with PIL bicubic, centre crop
// size x size, rescale by 1/255, normalise with mean/std, channel-first float32.
//
// Exactness: every step, decoding included, reproduces PIL + transformers bit for bit for
// JPEG, PNG and WebP (the resize is kernels/image_resample.h; rescale and normalise follow
// numpy's float64 -> float32 -> float32 arithmetic); image_preprocess_test checks it on
// every image of shared/data/images and on synthetic variants.
//
// Decoders, each driven as Pillow 9.4 (Debian 12's python3-pil) drives it:
//   - JPEG: libjpeg-turbo (the library PIL links) with PIL's settings: defaults (ISLOW
//     IDCT, fancy upsampling, block smoothing), RGB(X) output for 3 components, grey for
//     1. Progressive and arithmetic-coded files decode. As PIL's suspending reader, data
//     that ends before the last row is "unreadable" (PIL: "image file is truncated"), and
//     libjpeg's errors are refused with its message; its warnings (damaged data it can
//     skip) are ignored, as PIL ignores them, and the pixels are then PIL's too;
//   - WebP: libwebp's WebPAnimDecoder (RGBA), as PIL's _webp module: lossy and lossless,
//     still or animated (the first frame, on its transparent-black canvas, as
//     Image.open(...).convert('RGB') gives it); alpha is dropped;
//   - PNG, BMP, GIF: stb_image; PNG decodes to PIL's pixels exactly, BMP and GIF too on
//     the files tested (GIF transparency aside, below).
//
// Decoding rules, matching PIL's Image.open(...).convert('RGB'):
//   - formats: JPEG, PNG, BMP, GIF (first frame), WebP (first frame); anything else (TIFF,
//     HEIC, text) is refused by its signature, before any decoder can guess at it;
//   - the size is read from the header and checked against the pixel bound before any
//     pixel is decoded (JPEG: again from libjpeg's jpeg_read_header; WebP: WebPGetFeatures,
//     the canvas for an animation);
//   - grey -> RGB by replication; grey+alpha and RGBA -> RGB by DROPPING alpha (PIL's
//     convert does not composite onto a background); palette -> its RGB colours;
//   - 16-bit PNG: colour channels keep their high byte (PIL unpacks "RGB;16B" so), but
//     16-bit greyscale opens as PIL mode "I" and converts to RGB by clamping the 16-bit
//     value to 0..255 (so most of such an image is white, exactly as in LLaVA);
//   - CMYK / YCCK JPEGs (4 components) are refused (PIL would convert them; we do not
//     reproduce that conversion); JPEGs of 2 components or other than 8-bit are refused,
//     as by PIL;
//   - EXIF orientation is NOT applied: PIL's Image.open does not apply it and LLaVA never
//     calls ImageOps.exif_transpose, so the model saw the stored pixel grid;
//   - GIF transparency: stb_image leaves transparent pixels of the first frame black, PIL
//     gives them their palette colour (the only known decode difference from PIL).
// All functions are thread-safe (libjpeg and libwebp state is per call; stb_image keeps its
// failure reason per thread).
#pragma once


#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace align2 {

enum class AspectMode {
  pad,     // LLaVA-1.5 image_aspect_ratio "pad": expand2square with the mean colour first
  square,  // plain CLIPImageProcessor: shortest side to size, centre crop
};
const char* aspect_mode_name(AspectMode m);  // "pad", "square"
// Inverse of aspect_mode_name; throws std::invalid_argument for other names.
AspectMode aspect_mode_from_name(const std::string& name);

struct ImageSpec {
  std::int64_t size = 336;  // shortest side after resize = crop side, pixels
  // Per-channel (R, G, B) statistics of CLIP, on the 0..1 scale. Normalisation uses them
  // as float32 (as transformers' numpy code does); the pad colour is int(mean * 255).
  std::vector<float> mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::vector<float> std{0.26862954f, 0.26130258f, 0.27577711f};
  AspectMode aspect = AspectMode::pad;
  std::uint64_t max_pixels = 64'000'000;  // images whose header announces more are refused, and in
                                          // pad mode images whose square canvas (max(w, h)^2) holds more
};

// A refused image. what(): "<name>: <reason in words>". reason_code is one of
//   empty              zero bytes
//   unsupported_format not JPEG/PNG/BMP/GIF/WebP (TIFF, HEIF, text, ...)
//   too_large          header announces more than ImageSpec::max_pixels pixels, or (pad mode) the
//                      square canvas of a long thin image would hold more
//   cmyk               CMYK or YCCK JPEG
//   unreadable         truncated or corrupt, or a JPEG kind PIL cannot read either (the
//                      decoder's reason in the message: libjpeg's, libwebp's, stb_image's)
//   io                 the file cannot be opened or read

struct ImageError : std::runtime_error {
  ImageError(const std::string& reason_code, const std::string& message)
      : std::runtime_error(message), reason_code(reason_code) {}
  std::string reason_code;
};

// An 8-bit RGB image: pixels [height, width, 3] interleaved, row-major, no row padding.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // width * height * 3 bytes
};

// What the file's header says, read without decoding any pixel.
struct ImageHeader {
  std::string format;        // "jpeg", "png", "bmp", "gif", "webp"
  std::int64_t width = 0;    // pixels (WebP animation: the canvas)
  std::int64_t height = 0;   // pixels
  int components = 0;        // JPEG: components in the frame (1, 3, 4); PNG: samples per pixel;
                             // WebP: 4 with alpha, else 3; otherwise 0
  int bit_depth = 8;         // JPEG: sample precision; PNG: bits per sample (1, 2, 4, 8, 16); 8 otherwise
  int png_color_type = -1;   // PNG IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
  bool animated = false;     // WebP: an animation (its first frame is what decodes)
};

// Identifies the format by signature and reads the dimensions. Throws ImageError
// (empty, unsupported_format, unreadable) naming `name`.
ImageHeader read_image_header(const std::uint8_t* bytes, std::size_t n, const std::string& name);

// Decodes file bytes to RGB8 with the rules above. Checks the header against max_pixels
// and refuses CMYK before decoding. Throws ImageError naming `name`.
RgbImage decode_rgb8(const std::uint8_t* bytes, std::size_t n, const std::string& name,
                     std::uint64_t max_pixels = 64'000'000);

// tuple(int(x * 255) for x in mean): the pad colour of LLaVA's expand2square.
// For CLIP's mean this is (122, 116, 104).
void pad_colour(const ImageSpec& spec, std::uint8_t rgb[3]);

// LLaVA's expand2square: a square canvas of side max(w, h) filled with `rgb`, the image
// pasted at ((side - w) / 2, (side - h) / 2) (floor). A square image is returned as is.
RgbImage expand_to_square(const RgbImage& image, const std::uint8_t rgb[3]);

// transformers' get_resize_output_image_size(default_to_square=False): the shortest side
// becomes `size`, the other int(size * long / short) (true division, then truncation).
// Writes the new width and height.
void shortest_side_size(std::int64_t width, std::int64_t height, std::int64_t size, std::int64_t* new_width,
                        std::int64_t* new_height);

// Resize to `new_width` x `new_height` with PIL's bicubic (kernels/image_resample.h).
RgbImage resize_bicubic(const RgbImage& image, int new_width, int new_height);

// resize_bicubic to shortest_side_size(..., size).
RgbImage resize_shortest_side(const RgbImage& image, std::int64_t size);

// transformers' center_crop: top = (h - crop_h) // 2, left = (w - crop_w) // 2 (floor).
// When the image is smaller than the crop it is first zero-padded, centred with
// ceil((crop - side) / 2) before it, as transformers does.
RgbImage center_crop(const RgbImage& image, int crop_width, int crop_height);

// Rescale by 1/255 and normalise: out[c, y, x] = (float(p / 255.0) - mean[c]) / std[c],
// computed as numpy does (product in float64 rounded to float32; the rest float32).
// `out`: float32 [3, height, width], channel-first.
void normalize_to_chw(const RgbImage& image, const std::vector<float>& mean, const std::vector<float>& std,
                      float* out);

// Everything after decoding: (pad) -> resize shortest side -> centre crop -> normalise.
// `out`: float32 [3, spec.size, spec.size].
void preprocess_rgb(const RgbImage& image, const ImageSpec& spec, float* out);

// File bytes -> float32 [3, spec.size, spec.size] written to `out` (3 * size * size
// floats). Throws ImageError naming `name_for_errors`.
void preprocess_image(const std::uint8_t* bytes, std::size_t n, const ImageSpec& spec, float* out,
                      const std::string& name_for_errors);

// Reads `path` and runs preprocess_image. Throws ImageError (reason io when unreadable).
void preprocess_image_file(const std::string& path, const ImageSpec& spec, float* out);

// The whole file, for callers that decode themselves. Throws ImageError (io).
std::vector<std::uint8_t> read_image_file(const std::string& path);

}  // namespace align2
