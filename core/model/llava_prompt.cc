#include "core/model/llava_prompt.h"
#include "core/data/record_text.h"

namespace align2 {

std::vector<std::int64_t> tokenize_with_images(const Tokenizer& tokenizer, const std::string& prompt,
                                               std::int64_t image_token_index, bool add_bos) {
  std::vector<std::int64_t> ids;
  if (add_bos) ids.push_back(tokenizer.bos_id());
  std::size_t start = 0;
  for (;;) {
    std::size_t tag = prompt.find(kImageTag, start);
    std::string_view chunk(prompt.data() + start, (tag == std::string::npos ? prompt.size() : tag) - start);
    // tokenizer(chunk) of an empty chunk is just BOS, which LLaVA strips: nothing.
    if (!chunk.empty())
      for (std::int32_t id : tokenizer.encode(chunk, /*add_bos=*/false)) ids.push_back(id);
    if (tag == std::string::npos) break;
    ids.push_back(image_token_index);
    start = tag + kImageTag.size();
  }
  return ids;
}

}  // namespace align2
