// The rewrite / review prompts: rendering exactly as the templates say, strict parsing with
// every fallback reason, <image> placement, and the review decision's symmetry.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rewrite/rewrite_prompt.h"
#include "test/test_support.h"

namespace align2 {
namespace {

std::vector<Turn> conversation() {
  return {{"<image>\nWhat is the man doing?", "He is ironing clothes on the back of a taxi."},
          {"Is this safe?", "No, ironing on a moving car is dangerous."}};
}

TEST(RewritePrompt, RendersTheTemplatesInOnePass) {
  RewriteTemplates t{"H[{{history}}] Q[{{question}}] A[{{answer}}]",
                     "{{history}}|{{question_a}}|{{answer_a}}|{{question_b}}|{{answer_b}}"};
  auto turns = conversation();
  EXPECT_EQ(rewrite_instruction(t, turns, 0),
            "H[] Q[What is the man doing?] A[He is ironing clothes on the back of a taxi.]");
  EXPECT_EQ(rewrite_instruction(t, turns, 1),
            "H[Earlier in the conversation:\nQuestion: What is the man doing?\nAnswer: He is ironing clothes on the "
            "back of a taxi.\n] Q[Is this safe?] A[No, ironing on a moving car is dangerous.]");
  // Text from a record is never rescanned for placeholders.
  std::vector<Turn> sneaky = {{"{{answer}} <image>", "{{question}}"}};
  EXPECT_EQ(rewrite_instruction(t, sneaky, 0), "H[] Q[{{answer}}] A[{{question}}]");
  Turn rewrite{"What does the man do?", "He irons clothes on a taxi's back."};
  EXPECT_EQ(review_instruction(t, turns, 0, turns[0], rewrite),
            "|What is the man doing?|He is ironing clothes on the back of a taxi.|What does the man do?|He irons "
            "clothes on a taxi's back.");
}

TEST(RewritePrompt, ShippedTemplatesLoadAndUserTemplatesAreChecked) {
  RewriteTemplates d = load_rewrite_templates("", "");
  EXPECT_NE(d.rewrite.find("{{question}}"), std::string::npos);
  EXPECT_NE(d.review.find("{{answer_b}}"), std::string::npos);
  EXPECT_EQ(d.rewrite, test::read_file(std::string(ALIGN2_SOURCE_DIR) + "/prompts/rewrite.txt"));
  std::string dir = test::scratch_dir("rewrite-prompt");
  test::write_file(dir + "/bad.txt", "Rewrite {{question}} {{answr}}");
  try {
    load_rewrite_templates(dir + "/bad.txt", "");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt: unknown placeholder {{answr}}"), std::string::npos) << e.what();
  }
  test::write_file(dir + "/short.txt", "Rewrite {{question}}");
  test::write_file(dir + "/tag.txt", "<image> {{question}} {{answer}}");
  EXPECT_THROW(load_rewrite_templates(dir + "/tag.txt", ""), std::runtime_error);
  EXPECT_THROW(load_rewrite_templates(dir + "/short.txt", ""), std::runtime_error);
  EXPECT_THROW(load_rewrite_templates(dir + "/absent.txt", ""), std::runtime_error);
}

TEST(RewritePrompt, ParsesTheStrictFormatAndNamesEveryFallback) {
  Turn original = conversation()[0];
  RewriteLimits limits;
  ParsedRewrite ok = parse_rewrite("  Question: What does the man do?\nAnswer: He irons clothes on a taxi.\n", true,
                                   original, limits);
  ASSERT_EQ(ok.reason, RewriteFallback::none) << ok.detail;
  EXPECT_EQ(ok.turn.question, "<image>\nWhat does the man do?");  // the original's placement restored
  EXPECT_EQ(ok.turn.answer, "He irons clothes on a taxi.");

  auto reason = [&](const std::string& reply, bool eos = true) { return parse_rewrite(reply, eos, original, limits).reason; };
  EXPECT_EQ(reason("Question: What does he do?\nAnswer: He irons clothes on a taxi.", false), RewriteFallback::truncated);
  EXPECT_EQ(reason("Once upon a time, there was a little girl named Lily."), RewriteFallback::malformed);
  EXPECT_EQ(reason("Question: What does he do? He irons."), RewriteFallback::malformed);
  EXPECT_EQ(reason("Question: What does he do?\nAnswer: He irons.\nQuestion: And then?\nAnswer: Nothing."),
            RewriteFallback::malformed);
  EXPECT_EQ(reason("Question:\nAnswer: He irons clothes on a taxi."), RewriteFallback::empty);
  EXPECT_EQ(reason("Question: What does the man do?\nAnswer:  "), RewriteFallback::empty);
  EXPECT_EQ(reason("Question: <image> What does the man do?\nAnswer: He irons clothes on a taxi."),
            RewriteFallback::image_tag);
  EXPECT_EQ(reason("Question: What does the man do?\nAnswer: Yes."), RewriteFallback::length_ratio);
  std::string detail = parse_rewrite("Question: What does the man do?\nAnswer: Yes.", true, original, limits).detail;
  EXPECT_NE(detail.find("answer is 0.09 times"), std::string::npos) << detail;
  EXPECT_STREQ(fallback_name(RewriteFallback::length_ratio), "length_ratio");
}

TEST(RewritePrompt, ImageTagKeepsItsPlace) {
  EXPECT_EQ(place_image_tag("<image>\nWhat is it?", "What's that?"), "<image>\nWhat's that?");
  EXPECT_EQ(place_image_tag("What is it?\n<image>", "What's that?"), "What's that?\n<image>");
  EXPECT_EQ(place_image_tag("What is <image> it?", "What's that?"), "<image>\nWhat's that?");
  EXPECT_EQ(place_image_tag("What is it?", "What's that?"), "What's that?");
  EXPECT_EQ(code_points("caf\xc3\xa9 \xe4\xb8\xad"), 6u);
}

TEST(RewritePrompt, ReviewAveragesBothOrdersAndIsSymmetricForEqualPrompts) {
  // Identical texts give identical prompts in both orders: the mean is exactly one half.
  for (double la : {-0.1, -3.0, -40.0})
    for (double lb : {-0.2, -7.5, -900.0}) {
      ReviewDecision d = decide_review(la, lb, la, lb, 0.5);
      EXPECT_NEAR(d.p_rewrite_order1 + d.p_rewrite_order2, 1.0, 1e-15);
      EXPECT_NEAR(d.p_rewrite, 0.5, 1e-15);
    }
  // A judge that always says "A" (position bias) cancels out too.
  ReviewDecision biased = decide_review(-0.1, -2.4, -0.1, -2.4, 0.5);
  EXPECT_NEAR(biased.p_rewrite, 0.5, 1e-15);
  // Preferring the rewrite in both orders keeps it.
  ReviewDecision better = decide_review(std::log(0.2), std::log(0.8), std::log(0.7), std::log(0.3), 0.5);
  EXPECT_NEAR(better.p_rewrite_order1, 0.8, 1e-12);
  EXPECT_NEAR(better.p_rewrite_order2, 0.7, 1e-12);
  EXPECT_NEAR(better.p_rewrite, 0.75, 1e-12);
  EXPECT_TRUE(better.keep_rewrite);
  EXPECT_FALSE(decide_review(std::log(0.2), std::log(0.8), std::log(0.7), std::log(0.3), 0.8).keep_rewrite);
}

// The tie rule: a rewrite is kept when P(rewrite better) >= review_threshold, so an exact tie
// (a judge with no opinion, or one that only ever names a position) keeps the rewrite at the
// default threshold 0.5; anything below the threshold keeps the original.
TEST(RewritePrompt, AnExactTieKeepsTheRewrite) {
  ReviewDecision tie = decide_review(-1.5, -1.5, -1.5, -1.5, 0.5);  // equal labels: exactly 0.5 each order
  EXPECT_EQ(tie.p_rewrite, 0.5);
  EXPECT_TRUE(tie.keep_rewrite);
  EXPECT_FALSE(decide_review(-1.5, -1.5, -1.5, -1.5, std::nextafter(0.5, 1.0)).keep_rewrite);
  ReviewDecision position = decide_review(0.0, -std::log(2.0) * 60, 0.0, -std::log(2.0) * 60, 0.5);  // always "A"
  EXPECT_NEAR(position.p_rewrite, 0.5, 1e-15);
  ReviewDecision slightly_worse = decide_review(std::log(0.5), std::log(0.5), std::log(0.4999999), std::log(0.5000001), 0.5);
  EXPECT_LT(slightly_worse.p_rewrite, 0.5);
  EXPECT_FALSE(slightly_worse.keep_rewrite);
}

}  // namespace
}  // namespace align2
