// The text rules of LLaVA records that validation, prompts, reward-model texts, rewrites and
// reports share: the <image> tag, and Python's str.strip() (the reference code strips with it).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace align2 {

// Where a record's image goes in its text (LLaVA's DEFAULT_IMAGE_TOKEN).
inline constexpr std::string_view kImageTag = "<image>";

std::size_t count_image_tags(std::string_view text);
// "<image>\n" + text: the image on its own line in front, where LLaVA's training puts it
// (preprocess_multimodal) and the reference reward-model texts start.
std::string with_image_line(std::string_view text);
std::string remove_image_tags(std::string_view text);

// Python's str.strip() with no argument: removes leading and trailing characters
// for which str.isspace() holds (ASCII whitespace, U+001C..U+001F, U+0085, U+00A0,
// U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
std::string python_strip(std::string_view text);

// A message's words without its image: python_strip(remove_image_tags(text)), as the
// reference code's `.replace('<image>', '').strip()`.
std::string text_without_image(std::string_view text);

}  // namespace align2
