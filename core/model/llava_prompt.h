// Token ids of a LLaVA prompt that holds <image> tags, as LLaVA's tokenizer_image_token
// builds them: the prompt is split on "<image>", each chunk is tokenized on its own
// (SentencePiece adds its dummy-prefix space to every chunk), BOS only on the first
// chunk, and one `image_token_index` placeholder stands where each tag stood; the
// engine later replaces it by the image's projected patch embeddings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/tokenizer.h"

namespace align2 {

std::vector<std::int64_t> tokenize_with_images(const Tokenizer& tokenizer, const std::string& prompt,
                                               std::int64_t image_token_index, bool add_bos = true);

}  // namespace align2
