// Image preprocessing for CLIP, exact to PIL + transformers; see the header.
#include "core/model/image_preprocess.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE
#include <cstring>
#include <memory>
#include <string>

#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "kernels/image_resample.h"

// stb_image for PNG, BMP and GIF: its one definition, with the formats it is built for, is
// core/model/stb_image_impl.cc.
#define STBI_NO_STDIO
#include "stb_image.h"

namespace align2 {

const char* aspect_mode_name(AspectMode m) {
  switch (m) {
    case AspectMode::pad: return "pad";
    case AspectMode::square: return "square";
  }
  return "?";
}

AspectMode aspect_mode_from_name(const std::string& name) {
  if (name == "pad") return AspectMode::pad;
  if (name == "square") return AspectMode::square;
  throw std::invalid_argument("unknown aspect mode '" + name + "' (expected pad or square)");
}

namespace {

std::uint32_t be16(const std::uint8_t* p) { return (std::uint32_t(p[0]) << 8) | p[1]; }
std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}
std::uint32_t le16(const std::uint8_t* p) { return (std::uint32_t(p[1]) << 8) | p[0]; }
std::uint32_t le32(const std::uint8_t* p) {
  return (std::uint32_t(p[3]) << 24) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[1]) << 8) | p[0];
}

bool starts_with(const std::uint8_t* bytes, std::size_t n, const char* sig, std::size_t len, std::size_t at = 0) {
  return n >= at + len && std::memcmp(bytes + at, sig, len) == 0;
}

[[noreturn]] void refuse(const std::string& code, const std::string& name, const std::string& what) {
  throw ImageError(code, name + ": " + what);
}

// JPEG: walks the marker segments from SOI to the first frame header (SOFn) and reads
// its dimensions and component count. Throws unreadable when there is none.
void read_jpeg_header(const std::uint8_t* b, std::size_t n, const std::string& name, ImageHeader* h) {
  std::size_t pos = 2;  // after SOI
  while (true) {
    while (pos < n && b[pos] != 0xFF) ++pos;  // stray bytes between segments: skipped, as decoders do
    while (pos < n && b[pos] == 0xFF) ++pos;  // a marker, after optional fill bytes
    if (pos >= n) break;
    const std::uint8_t marker = b[pos++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length field
    if (marker == 0xD9 || marker == 0xDA) break;  // end of image / start of scan before any frame
    if (pos + 2 > n) break;
    const std::size_t length = be16(b + pos);  // includes its own two bytes
    if (length < 2) refuse("unreadable", name, "corrupt JPEG: bad segment length at byte " + std::to_string(pos));
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (pos + 8 > n) break;
      h->height = be16(b + pos + 3);
      h->width = be16(b + pos + 5);
      h->components = b[pos + 7];
      h->bit_depth = b[pos + 2];
      return;
    }
    pos += length;
  }
  refuse("unreadable", name, "truncated or corrupt JPEG: no frame header (SOF) before the image data");
}

const char* webp_status_name(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "user abort";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
  }
  return "unknown status";
}

// WebP: libwebp's header parser (no pixel is decoded). For an animation the size is the
// canvas's.
void read_webp_header(const std::uint8_t* b, std::size_t n, const std::string& name, ImageHeader* h) {
  // PIL identifies a WebP only with one of these chunks first (WebPImagePlugin._accept).
  if (!starts_with(b, n, "VP8 ", 4, 12) && !starts_with(b, n, "VP8L", 4, 12) && !starts_with(b, n, "VP8X", 4, 12))
    refuse("unreadable", name, "truncated or corrupt WebP: no VP8, VP8L or VP8X chunk after the RIFF header");
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(b, n, &features);
  if (status != VP8_STATUS_OK)
    refuse("unreadable", name,
           std::string("truncated or corrupt WebP header (libwebp: ") + webp_status_name(status) + ")");
  h->width = features.width;
  h->height = features.height;
  h->components = features.has_alpha ? 4 : 3;
  h->animated = features.has_animation != 0;
}

// ---- JPEG: libjpeg(-turbo) driven as PIL's JpegDecode.c drives it ----------------------
//
// PIL (Pillow 9.4, src/libImaging/JpegDecode.c) runs libjpeg with its default settings
// (JDCT_ISLOW, fancy upsampling, block smoothing), out_color_space RGBX for a 3-component
// frame (libjpeg-turbo's JCS_EXT_RGBX, the same arithmetic as JCS_RGB) and GRAYSCALE for
// a 1-component one (convert('RGB') then replicates the grey). Its source manager
// *suspends* when the data runs out, and ImageFile.load raises "image file is truncated"
// if the decoder has not finished when the file ends. So: the whole file is the buffer,
// fill_input_buffer suspends, and a suspension before the last row is "truncated"; one in
// jpeg_finish_decompress (e.g. only the EOI marker missing) is accepted, as PIL does
// (in practice the Huffman decoder already suspends in the last MCU without the EOI).
// libjpeg's warnings (corrupt data it can skip) are ignored, as PIL's output_message
// is a no-op; its errors longjmp back here instead of exit().
//
// setjmp/longjmp across C++ code: longjmp only ever leaves libjpeg's C frames and
// jpeg_error_exit, and lands in jpeg_phase_* below, which hold no object with a
// destructor; everything owned (the decompressor, the pixel buffers) lives in the
// caller, which destroys it however the phases end.

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
};

void jpeg_error_exit(j_common_ptr cinfo) {
  std::longjmp(reinterpret_cast<JpegErrorManager*>(cinfo->err)->jump, 1);
}
void jpeg_output_nothing(j_common_ptr) {}  // warnings are not printed (nor treated as errors)

void jpeg_source_nothing(j_decompress_ptr) {}
boolean jpeg_source_suspend(j_decompress_ptr) { return FALSE; }  // the buffer is the whole file
void jpeg_source_skip(j_decompress_ptr cinfo, long num_bytes) {
  jpeg_source_mgr* src = cinfo->src;
  if (num_bytes <= 0) return;
  const std::size_t skip = std::min(static_cast<std::size_t>(num_bytes), src->bytes_in_buffer);
  src->next_input_byte += skip;  // skipping past the end: the next read suspends
  src->bytes_in_buffer -= skip;
}

struct JpegDecompressor {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  jpeg_source_mgr src;

  JpegDecompressor(const std::uint8_t* bytes, std::size_t n) {
    std::memset(&cinfo, 0, sizeof cinfo);  // cinfo.mem == nullptr: destroy is safe before create
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.output_message = jpeg_output_nothing;
    src.next_input_byte = bytes;
    src.bytes_in_buffer = n;
    src.init_source = jpeg_source_nothing;
    src.fill_input_buffer = jpeg_source_suspend;
    src.skip_input_data = jpeg_source_skip;
    src.resync_to_restart = jpeg_resync_to_restart;
    src.term_source = jpeg_source_nothing;
  }
  ~JpegDecompressor() { jpeg_destroy_decompress(&cinfo); }
  JpegDecompressor(const JpegDecompressor&) = delete;
  JpegDecompressor& operator=(const JpegDecompressor&) = delete;

  std::string message() {  // libjpeg's text for the error it last raised
    char text[JMSG_LENGTH_MAX] = {0};
    (*err.pub.format_message)(reinterpret_cast<j_common_ptr>(&cinfo), text);
    return text;
  }
};

enum class JpegStatus { ok, suspended, failed };

// Creates the decompressor and reads the header up to the first frame, as PIL does
// (tables-only datastreams before it are skipped).
JpegStatus jpeg_phase_header(JpegDecompressor* d) {
  if (setjmp(d->err.jump)) return JpegStatus::failed;
  jpeg_create_decompress(&d->cinfo);
  d->cinfo.src = &d->src;
  int status = 0;
  do {
    status = jpeg_read_header(&d->cinfo, FALSE);
  } while (status == JPEG_HEADER_TABLES_ONLY);
  return status == JPEG_SUSPENDED ? JpegStatus::suspended : JpegStatus::ok;
}

// Decodes every row into `rgb` (width * height * 3), one row at a time through `row`
// (width * 4 bytes: RGBX, or grey in the first width bytes).
JpegStatus jpeg_phase_pixels(JpegDecompressor* d, std::uint8_t* rgb, std::uint8_t* row) {
  if (setjmp(d->err.jump)) return JpegStatus::failed;
  jpeg_decompress_struct* cinfo = &d->cinfo;
  if (!jpeg_start_decompress(cinfo)) return JpegStatus::suspended;  // progressive: the whole file is read here
  const std::size_t width = cinfo->output_width;
  const bool grey = cinfo->out_color_space == JCS_GRAYSCALE;
  while (cinfo->output_scanline < cinfo->output_height) {
    std::uint8_t* out = rgb + static_cast<std::size_t>(cinfo->output_scanline) * width * 3;
    JSAMPROW rows[1] = {row};
    if (jpeg_read_scanlines(cinfo, rows, 1) != 1) return JpegStatus::suspended;
    for (std::size_t x = 0; x < width; ++x) {
      const std::uint8_t* p = grey ? row + x : row + 4 * x;
      out[3 * x] = p[0];
      out[3 * x + 1] = grey ? p[0] : p[1];
      out[3 * x + 2] = grey ? p[0] : p[2];
    }
  }
  // Every row is there: a suspension while looking for EOI is accepted, as by PIL; an
  // error (a corrupt marker after the image) is not.
  jpeg_finish_decompress(cinfo);
  return JpegStatus::ok;
}

RgbImage decode_jpeg(const std::uint8_t* bytes, std::size_t n, const std::string& name, const ImageHeader& h,
                     std::uint64_t max_pixels) {
  if (h.bit_depth != 8)
    refuse("unreadable", name,
           "cannot decode jpeg: " + std::to_string(h.bit_depth) + "-bit samples (PIL reads 8-bit only)");
  if (h.components != 1 && h.components != 3)
    refuse("unreadable", name,
           "cannot decode jpeg: " + std::to_string(h.components) + " colour components (PIL reads 1, 3 or 4)");
  JpegDecompressor d(bytes, n);
  JpegStatus status = jpeg_phase_header(&d);
  if (status == JpegStatus::failed)
    refuse("unreadable", name, "cannot decode jpeg (libjpeg: " + d.message() + "): corrupt header");
  if (status == JpegStatus::suspended)
    refuse("unreadable", name, "cannot decode jpeg: truncated before the image data");
  // libjpeg's own reading of the frame, checked again before any pixel is decoded.
  const std::uint64_t width = d.cinfo.image_width, height = d.cinfo.image_height;
  if (width * height > max_pixels)
    refuse("too_large", name,
           "jpeg of " + std::to_string(width) + "x" + std::to_string(height) + " = " + std::to_string(width * height) +
               " pixels, above the bound of " + std::to_string(max_pixels));
  if (d.cinfo.num_components == 4 || d.cinfo.jpeg_color_space == JCS_CMYK || d.cinfo.jpeg_color_space == JCS_YCCK)
    refuse("cmyk", name, "CMYK JPEG not supported (4 colour components; convert it to RGB first)");
  if (d.cinfo.num_components != 1 && d.cinfo.num_components != 3)
    refuse("unreadable", name,
           "cannot decode jpeg: " + std::to_string(d.cinfo.num_components) + " colour components");
  if (width != static_cast<std::uint64_t>(h.width) || height != static_cast<std::uint64_t>(h.height))
    refuse("unreadable", name,
           "corrupt jpeg: libjpeg reads the frame as " + std::to_string(width) + "x" + std::to_string(height) +
               ", the header scan as " + std::to_string(h.width) + "x" + std::to_string(h.height));
  // PIL's settings: everything default but the output colour space.
  d.cinfo.out_color_space = d.cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_EXT_RGBX;
  RgbImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(width * height * 3);
  std::vector<std::uint8_t> row(width * 4);
  status = jpeg_phase_pixels(&d, image.pixels.data(), row.data());
  if (status == JpegStatus::failed)
    refuse("unreadable", name,
           "cannot decode jpeg (libjpeg: " + d.message() + "): corrupt, after " +
               std::to_string(d.cinfo.output_scanline) + " of " + std::to_string(height) + " rows");
  if (status == JpegStatus::suspended)
    refuse("unreadable", name,
           "cannot decode jpeg: truncated, the data ends after " + std::to_string(d.cinfo.output_scanline) + " of " +
               std::to_string(height) + " rows (PIL: image file is truncated)");
  return image;
}

// ---- WebP: libwebp's animation decoder, as PIL's _webp module uses it ------------------
//
// Pillow 9.4 built with WebPAnimDecoder (Debian's is) opens every WebP, still or
// animated, through WebPAnimDecoderNew with default options (MODE_RGBA, no threads) and
// reads frame 0 with WebPAnimDecoderGetNext: a canvas-sized, non-premultiplied RGBA
// image (for an animation: the first frame on a transparent-black canvas). convert('RGB')
// drops the alpha. The same calls here give the same pixels.
RgbImage decode_webp(const std::uint8_t* bytes, std::size_t n, const std::string& name, const ImageHeader& h) {
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options))
    refuse("unreadable", name, "cannot decode webp: libwebp version mismatch");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  WebPData data;
  data.bytes = bytes;
  data.size = n;
  std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> decoder(WebPAnimDecoderNew(&data, &options),
                                                                      WebPAnimDecoderDelete);
  if (!decoder)
    refuse("unreadable", name, "cannot decode webp (libwebp: the RIFF container does not parse): truncated or corrupt");
  WebPAnimInfo info;
  if (!WebPAnimDecoderGetInfo(decoder.get(), &info))
    refuse("unreadable", name, "cannot decode webp (libwebp: no animation info): corrupt");
  if (info.canvas_width != h.width || info.canvas_height != h.height)
    refuse("unreadable", name,
           "corrupt webp: canvas " + std::to_string(info.canvas_width) + "x" + std::to_string(info.canvas_height) +
               ", header " + std::to_string(h.width) + "x" + std::to_string(h.height));
  std::uint8_t* rgba = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp) || rgba == nullptr)
    refuse("unreadable", name,
           "cannot decode webp (libwebp: the first frame does not decode): truncated or corrupt");
  RgbImage image;
  image.width = static_cast<int>(info.canvas_width);
  image.height = static_cast<int>(info.canvas_height);
  const std::size_t count = static_cast<std::size_t>(image.width) * image.height;
  image.pixels.resize(count * 3);
  for (std::size_t i = 0; i < count; ++i) {
    image.pixels[3 * i] = rgba[4 * i];
    image.pixels[3 * i + 1] = rgba[4 * i + 1];
    image.pixels[3 * i + 2] = rgba[4 * i + 2];
  }
  return image;
}

}  // namespace

ImageHeader read_image_header(const std::uint8_t* b, std::size_t n, const std::string& name) {
  if (n == 0) refuse("empty", name, "empty file (0 bytes)");
  ImageHeader h;
  if (starts_with(b, n, "\xFF\xD8\xFF", 3)) {
    h.format = "jpeg";
    read_jpeg_header(b, n, name, &h);
  } else if (starts_with(b, n, "\x89PNG\r\n\x1A\n", 8)) {
    h.format = "png";
    if (n < 26 || !starts_with(b, n, "IHDR", 4, 12)) refuse("unreadable", name, "truncated or corrupt PNG: no IHDR chunk");
    h.width = be32(b + 16);
    h.height = be32(b + 20);
    h.bit_depth = b[24];
    h.png_color_type = b[25];
    static const int samples[7] = {1, 0, 3, 1, 2, 0, 4};  // by colour type
    h.components = h.png_color_type <= 6 ? samples[h.png_color_type] : 0;
  } else if (starts_with(b, n, "BM", 2)) {
    h.format = "bmp";
    if (n < 26) refuse("unreadable", name, "truncated BMP header");
    if (le32(b + 14) == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
      h.width = le16(b + 18);
      h.height = le16(b + 20);
    } else {
      h.width = static_cast<std::int32_t>(le32(b + 18));
      h.height = static_cast<std::int32_t>(le32(b + 22));
      if (h.height < 0) h.height = -h.height;  // top-down rows
    }
  } else if (starts_with(b, n, "GIF87a", 6) || starts_with(b, n, "GIF89a", 6)) {
    h.format = "gif";
    if (n < 10) refuse("unreadable", name, "truncated GIF header");
    h.width = le16(b + 6);  // logical screen: the size PIL and stb_image give the image
    h.height = le16(b + 8);
  } else if (starts_with(b, n, "RIFF", 4) && starts_with(b, n, "WEBP", 4, 8)) {
    h.format = "webp";
    read_webp_header(b, n, name, &h);
  } else if (starts_with(b, n, "II*\0", 4) || starts_with(b, n, "MM\0*", 4)) {
    refuse("unsupported_format", name, "TIFF is not supported (only JPEG, PNG, BMP, GIF and WebP decode)");
  } else if (starts_with(b, n, "ftyp", 4, 4)) {
    refuse("unsupported_format", name, "HEIF/AVIF is not supported (only JPEG, PNG, BMP, GIF and WebP decode)");
  } else {
    refuse("unsupported_format", name,
           "not an image: unknown signature (only JPEG, PNG, BMP, GIF and WebP decode)");
  }
  if (h.width <= 0 || h.height <= 0)
    refuse("unreadable", name,
           "corrupt " + h.format + " header: size " + std::to_string(h.width) + "x" + std::to_string(h.height));
  return h;
}

RgbImage decode_rgb8(const std::uint8_t* bytes, std::size_t n, const std::string& name, std::uint64_t max_pixels) {
  const ImageHeader h = read_image_header(bytes, n, name);
  const std::uint64_t pixels = static_cast<std::uint64_t>(h.width) * static_cast<std::uint64_t>(h.height);
  if (pixels > max_pixels)
    refuse("too_large", name,
           h.format + " of " + std::to_string(h.width) + "x" + std::to_string(h.height) + " = " +
               std::to_string(pixels) + " pixels, above the bound of " + std::to_string(max_pixels));
  if (h.format == "jpeg" && h.components == 4)
    refuse("cmyk", name, "CMYK JPEG not supported (4 colour components; convert it to RGB first)");
  if (h.format == "jpeg") return decode_jpeg(bytes, n, name, h, max_pixels);
  if (h.format == "webp") return decode_webp(bytes, n, name, h);

  // PNG, BMP, GIF: stb_image.
  if (n > static_cast<std::size_t>(INT_MAX)) refuse("too_large", name, "file larger than 2 GiB");
  if (h.format == "png") {
    // stb_image grows its compressed-data buffer to what each IDAT chunk declares before reading
    // it: a few bytes declaring a 2 GB chunk would allocate 2 GB. Such a file is truncated (PIL:
    // "image file is truncated"), so it is refused first. Chunks: length (4, big-endian), type (4),
    // data, CRC (4), from offset 8 up to IEND.
    for (std::size_t at = 8; at + 8 <= n;) {
      const std::uint64_t length = be32(bytes + at);
      const std::string type(reinterpret_cast<const char*>(bytes + at + 4), 4);
      if (type == "IDAT" && length > n - at - 8)
        refuse("unreadable", name,
               "png chunk IDAT at byte " + std::to_string(at) + " declares " + std::to_string(length) +
                   " bytes, past the end of the file (truncated)");
      if (type == "IEND") break;
      at += 12 + length;
    }
  }
  const int len = static_cast<int>(n);
  int x = 0, y = 0, file_channels = 0;
  if (!stbi_info_from_memory(bytes, len, &x, &y, &file_channels))
    refuse("unreadable", name, "corrupt " + h.format + " header (stb_image: " + stbi_failure_reason() + ")");

  RgbImage image;
  const bool grey16 = h.format == "png" && h.bit_depth == 16 && h.png_color_type == 0;
  if (grey16) {
    // PIL opens 16-bit grey as mode "I"; convert('RGB') clamps each value to 0..255.
    std::unique_ptr<stbi_us, void (*)(void*)> data(stbi_load_16_from_memory(bytes, len, &x, &y, &file_channels, 1),
                                                   stbi_image_free);
    if (!data) refuse("unreadable", name, std::string("cannot decode png (stb_image: ") + stbi_failure_reason() + ")");
    image.width = x;
    image.height = y;
    image.pixels.resize(static_cast<std::size_t>(x) * y * 3);
    for (std::size_t i = 0; i < static_cast<std::size_t>(x) * y; ++i) {
      const std::uint8_t v = data.get()[i] > 255 ? 255 : static_cast<std::uint8_t>(data.get()[i]);
      image.pixels[3 * i] = image.pixels[3 * i + 1] = image.pixels[3 * i + 2] = v;
    }
  } else {
    // Asking stb_image for 3 channels replicates grey, drops alpha (no compositing, as
    // PIL's convert), expands palettes, and keeps the high byte of 16-bit samples.
    std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load_from_memory(bytes, len, &x, &y, &file_channels, 3),
                                                   stbi_image_free);
    if (!data)
      refuse("unreadable", name,
             "cannot decode " + h.format + " (stb_image: " + stbi_failure_reason() + "): truncated or corrupt");
    image.width = x;
    image.height = y;
    image.pixels.assign(data.get(), data.get() + static_cast<std::size_t>(x) * y * 3);
  }
  if (image.width != h.width || image.height != h.height)
    refuse("unreadable", name,
           "decoded size " + std::to_string(image.width) + "x" + std::to_string(image.height) +
               " differs from the header's " + std::to_string(h.width) + "x" + std::to_string(h.height));
  return image;
}

void pad_colour(const ImageSpec& spec, std::uint8_t rgb[3]) {
  if (spec.mean.size() != 3) throw std::invalid_argument("ImageSpec: mean must have 3 values");
  for (int c = 0; c < 3; ++c) {
    const double v = static_cast<double>(spec.mean[c]) * 255;  // Python: int(x * 255), truncation
    rgb[c] = static_cast<std::uint8_t>(v <= 0 ? 0 : v >= 255 ? 255 : static_cast<int>(v));
  }
}

RgbImage expand_to_square(const RgbImage& image, const std::uint8_t rgb[3]) {
  if (image.width == image.height) return image;
  const int side = std::max(image.width, image.height);
  RgbImage out;
  out.width = out.height = side;
  out.pixels.resize(static_cast<std::size_t>(side) * side * 3);
  for (std::size_t i = 0; i < out.pixels.size(); i += 3) {
    out.pixels[i] = rgb[0];
    out.pixels[i + 1] = rgb[1];
    out.pixels[i + 2] = rgb[2];
  }
  const int left = (side - image.width) / 2, top = (side - image.height) / 2;
  const std::size_t row = static_cast<std::size_t>(image.width) * 3;
  for (int y = 0; y < image.height; ++y)
    std::memcpy(&out.pixels[((static_cast<std::size_t>(top) + y) * side + left) * 3], &image.pixels[y * row], row);
  return out;
}

void shortest_side_size(std::int64_t width, std::int64_t height, std::int64_t size, std::int64_t* new_width,
                        std::int64_t* new_height) {
  if (width < 1 || height < 1 || size < 1)
    throw std::invalid_argument("shortest_side_size: sizes must be >= 1");
  const std::int64_t shortest = std::min(width, height), longest = std::max(width, height);
  // Python's int(size * long / short): the product is exact, the true division rounds
  // once (as IEEE double division does for operands below 2^53), int() truncates.
  const auto other = static_cast<std::int64_t>(static_cast<double>(size * longest) / static_cast<double>(shortest));
  if (width <= height) {
    *new_width = size;
    *new_height = other;
  } else {
    *new_width = other;
    *new_height = size;
  }
}

RgbImage resize_bicubic(const RgbImage& image, int new_width, int new_height) {
  RgbImage out;
  out.width = new_width;
  out.height = new_height;
  out.pixels.resize(static_cast<std::size_t>(new_width) * new_height * 3);
  resample_bicubic_u8(image.pixels.data(), image.width, image.height, 3, out.pixels.data(), new_width, new_height);
  return out;
}

namespace {

// Sizes after resizing, checked to fit the int sizes of the kernel (and PIL).
void resized_size(const RgbImage& image, std::int64_t size, int* width, int* height) {
  std::int64_t w = 0, h = 0;
  shortest_side_size(image.width, image.height, size, &w, &h);
  if (w > INT_MAX / 4 || h > INT_MAX / 4)
    throw ImageError("too_large", "resizing " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                      " to shortest side " + std::to_string(size) + " gives " + std::to_string(w) +
                                      "x" + std::to_string(h) + ", too large");
  *width = static_cast<int>(w);
  *height = static_cast<int>(h);
}

// Python's a // 2 (floor) for possibly negative a.
int floor_half(int a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

}  // namespace

RgbImage resize_shortest_side(const RgbImage& image, std::int64_t size) {
  int w = 0, h = 0;
  resized_size(image, size, &w, &h);
  return resize_bicubic(image, w, h);
}

RgbImage center_crop(const RgbImage& image, int crop_width, int crop_height) {
  if (crop_width < 1 || crop_height < 1) throw std::invalid_argument("center_crop: crop size must be >= 1");
  // transformers: top = (h - crop_h) // 2; when the crop is taller than the image, the
  // image first sits in a zero canvas at ceil((crop_h - h) / 2), which brings top to 0.
  const int top = floor_half(image.height - crop_height), left = floor_half(image.width - crop_width);
  RgbImage out;
  out.width = crop_width;
  out.height = crop_height;
  out.pixels.assign(static_cast<std::size_t>(crop_width) * crop_height * 3, 0);
  // Output pixel (x, y) shows input (x + left, y + top) when inside the image, else zero.
  for (int y = 0; y < crop_height; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= image.height) continue;
    const int x0 = std::max(0, -left), x1 = std::min(crop_width, image.width - left);
    if (x1 > x0)
      std::memcpy(&out.pixels[(static_cast<std::size_t>(y) * crop_width + x0) * 3],
                  &image.pixels[(static_cast<std::size_t>(sy) * image.width + x0 + left) * 3],
                  static_cast<std::size_t>(x1 - x0) * 3);
  }
  return out;
}

void normalize_to_chw(const RgbImage& image, const std::vector<float>& mean, const std::vector<float>& std,
                      float* out) {
  if (mean.size() != 3 || std.size() != 3) throw std::invalid_argument("normalize_to_chw: mean and std need 3 values");
  // numpy: (uint8 as float64 * (1/255)) cast to float32, then (x - mean) / std in float32.
  float table[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(static_cast<double>(v) * (1.0 / 255.0));
      table[c][v] = (x - mean[c]) / std[c];
    }
  const std::size_t plane = static_cast<std::size_t>(image.width) * image.height;
  for (std::size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) out[c * plane + i] = table[c][image.pixels[i * 3 + c]];
}

void preprocess_rgb(const RgbImage& image, const ImageSpec& spec, float* out) {
  if (spec.size < 1 || spec.size > 16384) throw std::invalid_argument("ImageSpec: size must be in 1..16384");
  const int size = static_cast<int>(spec.size);
  RgbImage squared;
  const RgbImage* source = &image;
  if (spec.aspect == AspectMode::pad && image.width != image.height) {
    // The square canvas holds max(w, h)^2 pixels: a long thin image within the pixel bound
    // (e.g. 1 x 40000) would otherwise need gigabytes. The canvas obeys the same bound.
    const std::uint64_t side = static_cast<std::uint64_t>(std::max(image.width, image.height));
    if (side * side > spec.max_pixels)
      throw ImageError("too_large", "padding " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                        " to a square gives " + std::to_string(side) + "x" + std::to_string(side) +
                                        " = " + std::to_string(side * side) + " pixels, above the bound of " +
                                        std::to_string(spec.max_pixels));
    std::uint8_t rgb[3];
    pad_colour(spec, rgb);
    squared = expand_to_square(image, rgb);
    source = &squared;
  }
  int w = 0, h = 0;
  resized_size(*source, size, &w, &h);
  // Resize and centre crop in one pass: only the crop window of the resize is computed
  // (bit-identical to resize_shortest_side followed by center_crop; the resized image is
  // never smaller than the crop, so no zero padding arises).
  RgbImage cropped;
  cropped.width = cropped.height = size;
  cropped.pixels.resize(static_cast<std::size_t>(size) * size * 3);
  resample_bicubic_u8_window(source->pixels.data(), source->width, source->height, 3, w, h,
                             floor_half(w - size), floor_half(h - size), size, size, cropped.pixels.data());
  normalize_to_chw(cropped, spec.mean, spec.std, out);
}

void preprocess_image(const std::uint8_t* bytes, std::size_t n, const ImageSpec& spec, float* out,
                      const std::string& name_for_errors) {
  const RgbImage image = decode_rgb8(bytes, n, name_for_errors, spec.max_pixels);
  try {
    preprocess_rgb(image, spec, out);
  } catch (const ImageError& e) {
    throw ImageError(e.reason_code, name_for_errors + ": " + e.what());
  }
}

std::vector<std::uint8_t> read_image_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw ImageError("io", path + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<std::uint8_t> bytes;
  std::uint8_t buffer[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, f.get())) > 0) bytes.insert(bytes.end(), buffer, buffer + got);
  if (std::ferror(f.get())) throw ImageError("io", path + ": read error (" + std::strerror(errno) + ")");
  return bytes;
}

void preprocess_image_file(const std::string& path, const ImageSpec& spec, float* out) {
  const std::vector<std::uint8_t> bytes = read_image_file(path);
  preprocess_image(bytes.data(), bytes.size(), spec, out, path);
}


}  // namespace align2
