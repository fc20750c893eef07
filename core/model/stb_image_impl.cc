// The one definition of stb_image in the program, for PNG, BMP and GIF (JPEG is libjpeg's,
// WebP libwebp's). Only those formats are built, so stb_image cannot take an unknown file
// for one of its signature-less formats (TGA). core/model/image_preprocess.cc uses its public API.
//
// A translation unit of its own so that sanitized builds can exempt this third-party code from
// one UBSan check: stb_image's PNG reader copies a zero-length first IDAT chunk with
// memcpy(NULL, p, 0) (undefined by the letter of the C standard, harmless in practice; found by
// fuzz_image, test/fuzz/regressions/image/ubsan-stb-png-empty-first-idat). See core/CMakeLists.txt.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#include "stb_image.h"
