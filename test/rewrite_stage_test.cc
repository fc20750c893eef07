// Stage 3's rows and output records: counts per sample and turn, and curated.json's records
// with the kept rewrites in place.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/rewrite/rewrite_stage.h"

namespace align2 {
namespace {

using nlohmann::json;

Sample two_turns() {
  Sample s;
  s.key = std::string(32, 'a');
  s.id = "r1";
  s.subset = "conversation";
  s.turns = {{"<image>\nWhat is it?", "A cat."}, {"Its colour?", "Black \u00e9t\u00e9."}};
  return s;
}

TEST(RewriteStage, RowsCarryEveryTurnAndCountsAddUp) {
  Sample s = two_turns();
  SampleRewrite r;
  r.turns.resize(2);
  r.turns[0].rewrite = {"<image>\nWhat is shown?", "A cat is shown."};
  r.turns[0].reply = "Question: What is shown?\nAnswer: A cat is shown.";
  r.turns[0].reviewed = true;
  r.turns[0].review = decide_review(std::log(0.3), std::log(0.7), std::log(0.6), std::log(0.4), 0.5);
  r.turns[0].keep_rewrite = true;
  r.turns[1].reason = RewriteFallback::malformed;
  r.turns[1].reply = "Once upon a time";
  ShardRow row;
  row.subset = s.subset;
  fill_rewrite_row(s, r, &row);
  ASSERT_EQ(row.rewrite_kept.size(), 2u);
  EXPECT_EQ(row.rewrite_kept[0], 1);
  EXPECT_EQ(row.rewrite_kept[1], 0);
  EXPECT_EQ(row.rewrite_reasons[1], "malformed");
  EXPECT_NEAR(row.review_p[0], 0.65, 1e-6);
  EXPECT_TRUE(std::isnan(row.review_p[1]));
  EXPECT_EQ(row.rewritten_questions[1], "");

  RewriteCounts c;
  c.add(row);
  ShardRow original_kept = row;  // a second sample whose turns were all reviewed, originals won
  original_kept.rewrite_kept = {0, 0};
  original_kept.rewrite_reasons = {"", ""};
  c.add(original_kept);
  ShardRow failed;
  failed.subset = "detail";
  SampleRewrite f;
  f.failure = "image refused";
  fill_rewrite_row(s, f, &failed);
  EXPECT_EQ(failed.rewrite_reasons[0], "bad_image");
  c.add(failed);
  RewriteCounts round = RewriteCounts::deserialize(c.serialize());
  json j = round.summary();
  EXPECT_EQ(j["attempted"], 3);
  EXPECT_EQ(j["kept_rewrite"], 1);
  EXPECT_EQ(j["kept_original"], 1);
  EXPECT_EQ(j["fallback"], 1);
  EXPECT_EQ(j["turns"]["attempted"], 6);
  EXPECT_EQ(j["turns"]["kept_rewrite"], 1);
  EXPECT_EQ(j["turns"]["kept_original"], 2);
  EXPECT_EQ(j["turns"]["fallback"], 3);
  EXPECT_EQ(j["turns"]["by_reason"]["bad_image"], 2);
  EXPECT_EQ(j["by_subset"]["conversation"]["attempted"], 2);
  EXPECT_EQ(j["by_subset"]["conversation"]["kept_rewrite"], 1);
  EXPECT_EQ(j["by_subset"]["detail"]["kept_rewrite"], 0);
}

TEST(RewriteStage, CuratedRecordsHoldTheKeptRewritesOnly) {
  ShardRow row;
  row.id = "r1";
  row.key = std::string(32, 'b');
  row.rewritten_questions = {"<image>\nWhat is shown?", ""};
  row.rewritten_answers = {"A cat is shown.", ""};
  row.rewrite_kept = {1, 0};
  const std::string record =
      "{\"id\": \"r1\", \"image\": \"x.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat is "
      "it?\"}, {\"from\": \"gpt\", \"value\": \"A cat.\"}, {\"from\": \"human\", \"value\": \"Its colour?\"}, "
      "{\"from\": \"gpt\", \"value\": \"Black \u00e9t\u00e9.\"}], \"extra\": 1.50}";
  std::string out = curated_record(record, row);
  json j = json::parse(out);
  EXPECT_EQ(j["conversations"][0]["value"], "<image>\nWhat is shown?");
  EXPECT_EQ(j["conversations"][1]["value"], "A cat is shown.");
  EXPECT_EQ(j["conversations"][3]["value"], "Black \u00e9t\u00e9.");  // UTF-8 kept, not escaped
  EXPECT_NE(out.find("\u00e9t\u00e9"), std::string::npos);
  EXPECT_EQ(out.find("\"id\""), 1u);  // key order kept
  // Nothing kept: the record verbatim, byte for byte.
  row.rewrite_kept = {0, 0};
  EXPECT_EQ(curated_record(record, row), record);
  // The one-turn instruction/output form becomes LLaVA's conversation form, its kept rewrite
  // applied, "<image>\n" in front when it has an image, other fields after the conversation.
  ShardRow one;
  one.rewritten_questions = {"Q2"};
  one.rewritten_answers = {"A2"};
  one.rewrite_kept = {1};
  const std::string gpt4 = "{\"id\": \"7\", \"image\": \"a.jpg\", \"instruction\": \"Q\", \"output\": \"A\", \"type\": \"conv\"}";
  EXPECT_EQ(curated_record(gpt4, one),
            "{\"id\":\"7\",\"image\":\"a.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nQ2\"},"
            "{\"from\":\"gpt\",\"value\":\"A2\"}],\"type\":\"conv\"}");
  EXPECT_EQ(curated_record(gpt4, ShardRow{}),
            "{\"id\":\"7\",\"image\":\"a.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nQ\"},"
            "{\"from\":\"gpt\",\"value\":\"A\"}],\"type\":\"conv\"}");
  // Text-only: no tag; a tag the instruction already holds is not repeated.
  json text_only = json::parse(curated_record("{\"id\": 3, \"instruction\": \"Q\", \"output\": \"A\"}", ShardRow{}));
  EXPECT_EQ(text_only["conversations"][0]["value"], "Q");
  EXPECT_EQ(text_only["id"], 3);
  json tagged = json::parse(curated_record(
      "{\"id\": \"t\", \"image\": \"a.jpg\", \"instruction\": \"Q <image>\", \"output\": \"A\"}", ShardRow{}));
  EXPECT_EQ(tagged["conversations"][0]["value"], "Q <image>");
  EXPECT_FALSE(tagged.contains("instruction"));
  EXPECT_FALSE(tagged.contains("output"));
  // A record that does not have the row's turns is a bug: refused, naming the record.
  row.rewrite_kept = {1, 0, 1};
  row.rewritten_questions.push_back("q");
  row.rewritten_answers.push_back("a");
  try {
    curated_record(record, row);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("record r1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace align2
