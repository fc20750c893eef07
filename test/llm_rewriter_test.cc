// Stage 3's engine on the real trained tiny LLaMA (stories260K) and a tiny LLaVA with a real
// photo. The tiny model writes TinyStories, not rewrites: these tests check the mechanics —
// the prompt exactly as the template and chat template say, every reply parsed (and here
// refused with its reason), seeded sampling, batch independence, and the review's symmetry.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/engine/llm_rewriter.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

const std::string kSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.";

std::vector<Sample> real_samples(int n, bool with_image) {
  nlohmann::json records = nlohmann::json::parse(test::read_file(test::shared_path("data/llava/llava_instruct_60.json")));
  std::vector<Sample> out;
  for (int i = 0; i < n; ++i) {
    const auto& r = records[std::size_t(i)];
    Sample s;
    s.index = std::uint64_t(i);
    s.key = fmt::format("{:032x}", 0x1234567ull * std::uint64_t(i + 1));
    s.id = r["id"].get<std::string>();
    if (with_image) s.image = "photo.jpg";
    const auto& c = r["conversations"];
    for (std::size_t k = 0; k + 1 < c.size(); k += 2) s.turns.push_back({c[k]["value"], c[k + 1]["value"]});
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<const Sample*> pointers(const std::vector<Sample>& v) {
  std::vector<const Sample*> p;
  for (const Sample& s : v) p.push_back(&s);
  return p;
}

// A short prompt, so that the tiny model's 512 positions hold prompt and reply.
RewriteTemplates short_templates() {
  return {"Say it again: {{question}} {{answer}}", "Which is better? A: {{question_a}} {{answer_a}} B: {{question_b}} {{answer_b}}"};
}

// Real turns cut to their first sentence-ish 80 bytes.
std::vector<Sample> short_samples(int n) {
  std::vector<Sample> v = real_samples(n, false);
  for (Sample& s : v)
    for (Turn& t : s.turns) {
      t.question = t.question.substr(0, 80);
      t.answer = t.answer.substr(0, 80);
    }
  return v;
}

RewriteSettings settings(std::uint64_t batch, std::int64_t max_new = 48) {
  RewriteSettings s = rewrite_settings(RewriteConfig{});
  s.batch_size = batch;
  s.batch_tokens = 8192;  // length-bucketed batches under a token budget (the stage itself uses none)
  s.max_new_tokens = max_new;
  return s;
}

TEST(LlmRewriter, PromptIsTheTemplateInTheChatTemplate) {
  at::set_num_threads(1);
  RewriteTemplates t = default_rewrite_templates();
  LlmRewriter rw(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(4), t);
  EXPECT_FALSE(rw.uses_images());
  std::vector<Sample> samples = real_samples(1, false);
  const Sample& s = samples[0];
  EXPECT_EQ(rw.rewrite_prompt(s, 1), kSystem + " USER: " + rewrite_instruction(t, s.turns, 1) + " ASSISTANT:");
  Turn other{"Q?", "A."};
  EXPECT_EQ(rw.review_prompt(s, 0, s.turns[0], other),
            kSystem + " USER: " + review_instruction(t, s.turns, 0, s.turns[0], other) + " ASSISTANT:");
  // The instruction names the question without its <image> tag and the answer, as the template says.
  std::string instruction = rewrite_instruction(t, s.turns, 0);
  EXPECT_EQ(instruction.find("<image>"), std::string::npos);
  EXPECT_NE(instruction.find("Answer: " + s.turns[0].answer + "\n"), std::string::npos);
}

TEST(LlmRewriter, TinyStoriesRepliesFallBackWithTheirReasonAndBatchDoesNotMatter) {
  at::set_num_threads(1);
  std::vector<Sample> samples = short_samples(3);
  LlmRewriter one(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(1), short_templates());
  LlmRewriter many(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(8), short_templates());
  std::vector<SampleRewrite> a = one.rewrite(pointers(samples)), b = many.rewrite(pointers(samples));
  ASSERT_EQ(a.size(), 3u);
  std::size_t turns = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].turns.size(), samples[i].turns.size());
    for (std::size_t t = 0; t < a[i].turns.size(); ++t, ++turns) {
      const TurnRewrite& x = a[i].turns[t];
      EXPECT_EQ(x.reply, b[i].turns[t].reply) << "sample " << i << " turn " << t;
      EXPECT_FALSE(x.reply.empty());
      EXPECT_NE(x.reason, RewriteFallback::none) << x.reply;  // a story, not "Question: ...\nAnswer: ..."
      EXPECT_FALSE(x.detail.empty());
      EXPECT_FALSE(x.keep_rewrite);
      EXPECT_FALSE(x.reviewed);
    }
  }
  EXPECT_GT(one.stats().generated_tokens, turns);
  EXPECT_EQ(one.stats().generated_tokens, many.stats().generated_tokens);
  // 48 new tokens cannot hold a story: cut replies are `truncated`; a reply that ended is parsed.
  for (const SampleRewrite& r : a)
    for (const TurnRewrite& t : r.turns)
      EXPECT_TRUE(t.reason == RewriteFallback::truncated || t.reason == RewriteFallback::malformed) << t.reply;

  // The shipped prompt around a real conversation does not fit 512 positions: too_long, or a
  // reply cut where the context ends; never an error.
  std::vector<Sample> full = real_samples(2, false);
  LlmRewriter shipped(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(4),
                      default_rewrite_templates());
  std::size_t too_long = 0;
  for (const SampleRewrite& r : shipped.rewrite(pointers(full)))
    for (const TurnRewrite& t : r.turns) {
      EXPECT_NE(t.reason, RewriteFallback::none);
      too_long += t.reason == RewriteFallback::too_long;
      if (t.reason == RewriteFallback::too_long) {
        EXPECT_NE(t.detail.find("the model holds 512"), std::string::npos);
      }
    }
  EXPECT_GT(too_long, 0u);
}

TEST(LlmRewriter, SamplingIsSeededByTheSampleKey) {
  at::set_num_threads(1);
  RewriteSettings s = settings(2, 24);
  s.temperature = 1.0;
  LlmRewriter rw(test::shared_path("models/stories260K-hf"), "", at::kFloat, s, short_templates());
  std::vector<Sample> samples = short_samples(2);
  auto together = rw.rewrite(pointers(samples));
  auto alone = rw.rewrite({&samples[1]});
  EXPECT_EQ(together[1].turns[0].reply, alone[0].turns[0].reply);
  Sample rekeyed = samples[1];
  rekeyed.key = std::string(32, 'f');
  EXPECT_NE(rw.rewrite({&rekeyed})[0].turns[0].reply, alone[0].turns[0].reply);
}

// The model is loaded by the first rewrite, not by the constructor, and release() frees it
// (the stage's end); the next rewrite loads it again and writes the same text.
TEST(LlmRewriter, LoadsItsModelForTheStageAndReleasesIt) {
  at::set_num_threads(1);
  LlmRewriter rw(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(2, 24), short_templates());
  EXPECT_FALSE(rw.holds_model());
  std::vector<Sample> samples = short_samples(2);
  auto first = rw.rewrite(pointers(samples));
  EXPECT_TRUE(rw.holds_model());
  rw.release();
  EXPECT_FALSE(rw.holds_model());
  auto again = rw.rewrite(pointers(samples));
  ASSERT_EQ(again.size(), first.size());
  for (std::size_t i = 0; i < first.size(); ++i)
    for (std::size_t t = 0; t < first[i].turns.size(); ++t) EXPECT_EQ(again[i].turns[t].reply, first[i].turns[t].reply);
}

TEST(LlmRewriter, ReviewOfIdenticalTextsIsSymmetric) {
  at::set_num_threads(1);
  LlmRewriter rw(test::shared_path("models/stories260K-hf"), "", at::kFloat, settings(3), default_rewrite_templates());
  std::vector<Sample> samples = real_samples(1, false);
  const Sample& s = samples[0];
  const Turn& x = s.turns[0];
  // Both orders show the same text: the prompts are equal, so are their label probabilities.
  std::string order1 = rw.review_prompt(s, 0, x, x), order2 = rw.review_prompt(s, 0, x, x);
  auto lp = rw.label_logprobs({order1, order2}, at::Tensor());
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_LT(lp[0][0], 0.0);
  EXPECT_LT(lp[0][1], 0.0);
  // The two prompts are two rows of one batched float32 forward: the BLAS kernels may tile the
  // rows differently, so the two rows can differ in the last bits (2e-7 seen on an AVX2-only EPYC;
  // exact on AVX-512 machines). decide_review's own symmetry is exact (rewrite_prompt_test).
  ReviewDecision d = decide_review(lp[0][0], lp[0][1], lp[1][0], lp[1][1], 0.5);
  EXPECT_NEAR(d.p_rewrite_order1 + d.p_rewrite_order2, 1.0, 1e-6);
  EXPECT_NEAR(d.p_rewrite, 0.5, 1e-6);
  // Different texts: order matters to the model, and the probabilities are real numbers in (0, 1).
  Turn y{"What is shown?", "A bus on a street."};
  auto lp2 = rw.label_logprobs({rw.review_prompt(s, 0, x, y), rw.review_prompt(s, 0, y, x)}, at::Tensor());
  ReviewDecision e = decide_review(lp2[0][0], lp2[0][1], lp2[1][0], lp2[1][1], 0.5);
  EXPECT_GT(e.p_rewrite, 0.0);
  EXPECT_LT(e.p_rewrite, 1.0);
}

TEST(LlmRewriter, TinyLlavaSeesTheImageAndABadImageIsASampleFailure) {
  at::set_num_threads(1);
  std::string dir = test::scratch_dir("llm-rewriter");
  test::write_tiny_model(dir + "/llava", test::TinyLayout::llava_liuhaotian, {},
                         test::shared_path("models/stories260K-hf/tokenizer.model"));
  fs::create_directories(dir + "/images");
  fs::copy_file(test::shared_path("data/images/extreme_ironing.jpg"), dir + "/images/photo.jpg");
  LlmRewriter rw(dir + "/llava", dir + "/images", at::kFloat, settings(4, 8), default_rewrite_templates());
  EXPECT_TRUE(rw.uses_images());
  std::vector<Sample> samples = real_samples(2, true);
  EXPECT_EQ(rw.rewrite_prompt(samples[0], 0).find(kSystem + " USER: <image>\n"), 0u);
  samples[1].image = "missing.jpg";
  auto out = rw.rewrite(pointers(samples));
  EXPECT_TRUE(out[0].failure.empty());
  EXPECT_EQ(out[0].turns.size(), samples[0].turns.size());
  EXPECT_FALSE(out[0].turns[0].reply.empty());
  EXPECT_NE(out[1].failure.find("missing.jpg"), std::string::npos) << out[1].failure;
}

}  // namespace
}  // namespace align2
