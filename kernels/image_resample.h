// Bicubic resize of 8-bit images, bit-exact with Pillow's Image.resize(..., BICUBIC) on
// 8-bit modes ("L", "RGB"), which is what transformers' CLIPImageProcessor runs.
//
// What Pillow does (src/libImaging/Resample.c), and so what this does:
//   - a separable filter, Keys' cubic with a = -0.5, support 2 input pixels;
//   - antialiasing: when shrinking by a factor s > 1 along an axis, the filter is
//     stretched by s (support 2*s input pixels), so every input pixel contributes;
//   - pixel centres at (i + 0.5); output pixel j of an axis of length `in` resized to
//     `out` is centred at (j + 0.5) * in / out; taps are clamped to the image (the
//     weights of the remaining taps are renormalised to sum to 1, no edge padding);
//   - weights in double, then rounded to fixed point with 22 fractional bits;
//     accumulation in 32-bit integers starting from one half, result = sum >> 22
//     clamped to 0..255;
//   - the horizontal pass runs first and its result is rounded to 8 bits before the
//     vertical pass; an axis whose size does not change is not filtered at all, and
//     when neither changes the image is copied.
// Plain CPU code; the double arithmetic of the weights must not be contracted into FMAs
// (GCC's ISO C++ mode and the baseline x86-64 target do not), or rare ties round apart
// from Pillow's.
#pragma once

#include <cstdint>

namespace align2 {

// Resizes `src`, interleaved uint8 pixels [src_h, src_w, channels] (row-major, no row
// padding), to `dst`, interleaved uint8 pixels [dst_h, dst_w, channels]. Every channel is
// filtered independently (no premultiplied alpha: pass colour channels only).
// Sizes and channels must be >= 1; `dst` must not overlap `src`.
// Throws std::invalid_argument on bad sizes.
void resample_bicubic_u8(const std::uint8_t* src, int src_w, int src_h, int channels, std::uint8_t* dst,
                         int dst_w, int dst_h);

// The window [win_x, win_x + win_w) x [win_y, win_y + win_h) of the dst_w x dst_h resize
// above, computed without the rest: `out` is uint8 [win_h, win_w, channels]. Each output
// pixel depends only on its own taps, so the window is bit-identical to cropping the
// full result (resize-then-centre-crop costs the crop only). The window must lie inside
// dst_w x dst_h; throws std::invalid_argument otherwise.
void resample_bicubic_u8_window(const std::uint8_t* src, int src_w, int src_h, int channels, int dst_w, int dst_h,
                                int win_x, int win_y, int win_w, int win_h, std::uint8_t* out);

}  // namespace align2
