// Pillow-exact bicubic resize of 8-bit images; see image_resample.h for the arithmetic.
#include "kernels/image_resample.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace align2 {
namespace {

// Fixed-point weights carry 22 fractional bits: 8 bits of pixel value and 2 bits of
// headroom (bicubic weights can sum above 1 on one side) fit a 32-bit accumulator.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Keys' cubic convolution kernel with a = -0.5, support [-2, 2]. The expressions keep
// Pillow's evaluation order so that the double results are the same bits.
double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// The taps of output pixels [out_first, out_first + out_count) of one axis resized from
// in_size to out_size: output pixel out_first + j reads input pixels first[j] ..
// first[j] + count[j] - 1 with weights[j * taps + i] (fixed point, kPrecisionBits bits).
struct AxisTaps {
  int taps = 0;                       // row length of `weights` (Pillow's ksize)
  std::vector<int> first;             // [out_count] first input index used
  std::vector<int> count;             // [out_count] number of input pixels used
  std::vector<std::int32_t> weights;  // [out_count, taps]
};

AxisTaps compute_taps(int in_size, int out_size, int out_first, int out_count) {
  // Pillow passes the source box as floats (0, in_size) and takes its width as a float.
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;  // stretch only when shrinking
  const double support = 2.0 * filterscale;               // half-width, input pixels
  AxisTaps t;
  t.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_count);
  t.count.resize(out_count);
  t.weights.assign(static_cast<std::size_t>(out_count) * t.taps, 0);
  std::vector<double> k(t.taps);
  const double inv_filterscale = 1.0 / filterscale;
  for (int j = 0; j < out_count; ++j) {
    const double center = 0.0 + (out_first + j + 0.5) * scale;  // input pixel units
    int lo = static_cast<int>(center - support + 0.5);            // truncation, as Pillow
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
      const double w = bicubic((i + lo - center + 0.5) * inv_filterscale);
      k[i] = w;
      sum += w;
    }
    if (sum != 0.0)
      for (int i = 0; i < n; ++i) k[i] /= sum;
    std::int32_t* out = &t.weights[static_cast<std::size_t>(j) * t.taps];
    for (int i = 0; i < n; ++i) {
      const double scaled = k[i] * (1 << kPrecisionBits);
      out[i] = static_cast<std::int32_t>(k[i] < 0 ? -0.5 + scaled : 0.5 + scaled);  // half away from 0
    }
    t.first[j] = lo;
    t.count[j] = n;
  }
  return t;
}

// Accumulator (which started at one half) -> uint8: drop the fraction, clamp to 0..255.
// The shift of a negative int is arithmetic with every compiler we build with.
inline std::uint8_t clip8(std::int32_t acc) {
  const std::int32_t v = acc >> kPrecisionBits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Filters `rows` rows of `src` (row stride src_w * channels bytes) along x with `t`
// into `dst` [rows, t.first.size(), channels].
void horizontal_pass(const std::uint8_t* src, int src_w, int rows, int channels, const AxisTaps& t,
                     std::uint8_t* dst) {
  const int out_w = static_cast<int>(t.first.size());
  std::vector<std::int32_t> acc(channels);
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* in = src + static_cast<std::size_t>(y) * src_w * channels;
    std::uint8_t* out = dst + static_cast<std::size_t>(y) * out_w * channels;
    for (int x = 0; x < out_w; ++x) {
      const std::int32_t* w = &t.weights[static_cast<std::size_t>(x) * t.taps];
      const std::uint8_t* p = in + static_cast<std::size_t>(t.first[x]) * channels;
      for (int c = 0; c < channels; ++c) acc[c] = 1 << (kPrecisionBits - 1);
      for (int i = 0; i < t.count[x]; ++i)
        for (int c = 0; c < channels; ++c) acc[c] += p[i * channels + c] * w[i];
      for (int c = 0; c < channels; ++c) out[x * channels + c] = clip8(acc[c]);
    }
  }
}

// Filters along y with `t`: `src` holds rows row0, row0 + 1, ... of `row_bytes` bytes
// each (input row r is at src + (r - row0) * row_bytes); `dst` is [t.first.size(), row_bytes].
void vertical_pass(const std::uint8_t* src, std::size_t row_bytes, int row0, const AxisTaps& t, std::uint8_t* dst) {
  std::vector<std::int32_t> acc(row_bytes);
  for (std::size_t y = 0; y < t.first.size(); ++y) {
    const std::int32_t* w = &t.weights[y * t.taps];
    const std::uint8_t* in = src + static_cast<std::size_t>(t.first[y] - row0) * row_bytes;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int i = 0; i < t.count[y]; ++i) {
      const std::uint8_t* line = in + i * row_bytes;
      const std::int32_t wi = w[i];
      for (std::size_t e = 0; e < row_bytes; ++e) acc[e] += line[e] * wi;
    }
    std::uint8_t* out = dst + y * row_bytes;
    for (std::size_t e = 0; e < row_bytes; ++e) out[e] = clip8(acc[e]);
  }
}

}  // namespace

void resample_bicubic_u8_window(const std::uint8_t* src, int src_w, int src_h, int channels, int dst_w, int dst_h,
                                int win_x, int win_y, int win_w, int win_h, std::uint8_t* out) {
  if (src_w < 1 || src_h < 1 || dst_w < 1 || dst_h < 1 || channels < 1 || win_w < 1 || win_h < 1 || win_x < 0 ||
      win_y < 0 || win_x > dst_w - win_w || win_y > dst_h - win_h)
    throw std::invalid_argument("resample_bicubic_u8: bad sizes: " + std::to_string(src_w) + "x" +
                                std::to_string(src_h) + " -> " + std::to_string(dst_w) + "x" +
                                std::to_string(dst_h) + ", window " + std::to_string(win_w) + "x" +
                                std::to_string(win_h) + " at (" + std::to_string(win_x) + ", " +
                                std::to_string(win_y) + "), " + std::to_string(channels) + " channels");
  const bool need_horizontal = dst_w != src_w;  // Pillow filters an axis only when its size changes
  const bool need_vertical = dst_h != src_h;
  const std::size_t src_row = static_cast<std::size_t>(src_w) * channels;  // bytes per source row
  const std::size_t out_row = static_cast<std::size_t>(win_w) * channels;  // bytes per output row

  if (!need_vertical) {  // rows win_y.. of the source, filtered along x or copied
    const std::uint8_t* rows = src + static_cast<std::size_t>(win_y) * src_row;
    if (need_horizontal) {
      horizontal_pass(rows, src_w, win_h, channels, compute_taps(src_w, dst_w, win_x, win_w), out);
    } else {
      for (int y = 0; y < win_h; ++y)
        std::memcpy(out + y * out_row, rows + y * src_row + static_cast<std::size_t>(win_x) * channels, out_row);
    }
    return;
  }
  const AxisTaps vertical = compute_taps(src_h, dst_h, win_y, win_h);
  // Source rows the vertical taps read: [row0, row_end).
  const int row0 = vertical.first.front();
  const int row_end = vertical.first.back() + vertical.count.back();
  if (!need_horizontal) {  // columns win_x.. of the source, filtered along y
    std::vector<std::uint8_t> columns(static_cast<std::size_t>(row_end - row0) * out_row);  // [rows, win_w, channels]
    for (int r = row0; r < row_end; ++r)
      std::memcpy(&columns[(r - row0) * out_row], src + r * src_row + static_cast<std::size_t>(win_x) * channels,
                  out_row);
    vertical_pass(columns.data(), out_row, row0, vertical, out);
    return;
  }
  // Horizontal first, rounded to 8 bits, then vertical: Pillow's order.
  std::vector<std::uint8_t> temp(static_cast<std::size_t>(row_end - row0) * out_row);  // [rows, win_w, channels]
  horizontal_pass(src + row0 * src_row, src_w, row_end - row0, channels, compute_taps(src_w, dst_w, win_x, win_w),
                  temp.data());
  vertical_pass(temp.data(), out_row, row0, vertical, out);
}

void resample_bicubic_u8(const std::uint8_t* src, int src_w, int src_h, int channels, std::uint8_t* dst,
                         int dst_w, int dst_h) {
  resample_bicubic_u8_window(src, src_w, src_h, channels, dst_w, dst_h, 0, 0, dst_w, dst_h, dst);
}

}  // namespace align2
