// LLaVA's tokenizer_image_token rule on the real LLaMA tokenizer: chunks encoded on
// their own, BOS once, one placeholder per <image>.
#include <gtest/gtest.h>

#include "core/model/chat_template.h"
#include "core/model/llava_prompt.h"
#include "test/test_support.h"

namespace align2 {
namespace {

std::vector<std::int64_t> widen(const std::vector<std::int32_t>& v) { return {v.begin(), v.end()}; }

TEST(LlavaPrompt, SplitsOnImageTagsLikeTokenizerImageToken) {
  Tokenizer tok = Tokenizer::load(test::shared_path("tokenizers/llama/tokenizer.model"));
  const std::int64_t img = -200;
  std::string chunk0 = "A chat. USER: ", chunk1 = "\nWhat is shown? ASSISTANT:";
  std::vector<std::int64_t> ids = tokenize_with_images(tok, chunk0 + "<image>" + chunk1, img);
  std::vector<std::int64_t> expected = {1};
  for (auto id : widen(tok.encode(chunk0, false))) expected.push_back(id);
  expected.push_back(img);
  for (auto id : widen(tok.encode(chunk1, false))) expected.push_back(id);
  EXPECT_EQ(ids, expected);
  // Each chunk gets SentencePiece's dummy-prefix space: "\n..." starts with "▁" then <0x0A>.
  std::vector<std::int32_t> c1 = tok.encode(chunk1, false);
  EXPECT_EQ(tok.piece(c1[0]), "\xE2\x96\x81");
  EXPECT_EQ(tok.piece(c1[1]), "<0x0A>");
  // An empty leading chunk adds nothing but BOS; two tags give two placeholders.
  EXPECT_EQ(tokenize_with_images(tok, "<image>", img), (std::vector<std::int64_t>{1, img}));
  std::vector<std::int64_t> two = tokenize_with_images(tok, "<image><image>x", img);
  EXPECT_EQ(std::count(two.begin(), two.end(), img), 2);
  EXPECT_EQ(tokenize_with_images(tok, "plain text", img), [&] {
    std::vector<std::int64_t> v = {1};
    for (auto id : widen(tok.encode("plain text", false))) v.push_back(id);
    return v;
  }());
}

TEST(LlavaPrompt, RealTrainingPromptHasOnePlaceholderAfterTheSystemText) {
  Tokenizer tok = Tokenizer::load(test::shared_path("tokenizers/llama/tokenizer.model"));
  std::vector<Turn> turns = {{"What is the man doing?\n<image>", "He is ironing."}};
  std::string prompt = render_training(template_from_name("vicuna_v1"), turns, /*has_image=*/true);
  std::vector<std::int64_t> ids = tokenize_with_images(tok, prompt, -200);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), -200), 1);
  std::vector<std::int32_t> text;
  for (auto id : ids)
    if (id != -200) text.push_back(std::int32_t(id));
  std::string round_trip = tok.decode(text);
  EXPECT_NE(round_trip.find("What is the man doing?"), std::string::npos) << round_trip;
}

}  // namespace
}  // namespace align2
