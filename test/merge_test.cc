// Merge accounting: every input record exactly once; missing and repeated keys are named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/merge.h"
#include "core/shard_store.h"
#include "test/test_support.h"

namespace align2 {
namespace {

using nlohmann::json;

ShardMeta meta(const std::string& stage, int rank, int world, std::uint64_t n) {
  ShardMeta m;
  m.align2_version = "test";
  m.config_fingerprint = "cfg";
  m.input_fingerprint = "pool";
  m.stage = stage;
  m.rank = rank;
  m.world_size = world;
  m.input_records = n;
  m.stage_summary_json = json{{"stage", stage}}.dump();
  m.timings_json = json{{"busy_s", 0.5 * (rank + 1)}}.dump();
  return m;
}

ShardRow row(std::uint64_t index, double q, std::int8_t selected, const std::string& status = "valid") {
  ShardRow r;
  r.index = index;
  r.key = std::string(31, 'k') + char('a' + index);
  r.id = "id" + std::to_string(index);
  r.subset = index % 2 ? "detail" : "conversation";
  r.status = status;
  r.record = "{\"id\": \"id" + std::to_string(index) + "\"}";
  r.question_score = q;
  r.selected_questions = selected;
  return r;
}

class Merge : public ::testing::Test {
 protected:
  void SetUp() override { out_ = test::scratch_dir("merge"); }

  // Stage 1 over 6 records on 2 ranks: records 1, 2, 4 kept; 5 invalid.
  std::vector<std::string> stage1(std::vector<ShardRow> rank0_extra = {}, bool drop_last = false) {
    std::vector<ShardRow> a = {row(0, 0.1, 0), row(1, 0.9, 1), row(2, 0.7, 1)};
    std::vector<ShardRow> b = {row(3, 0.2, 0), row(4, 0.9, 1), row(5, NAN, -1, "invalid")};
    b[2].reason = "not_json";
    for (auto& r : rank0_extra) a.push_back(r);
    if (drop_last) b.pop_back();
    std::string p0 = shard_path(out_, "select_questions", 0), p1 = shard_path(out_, "select_questions", 1);
    write_shard(p0, meta("select_questions", 0, 2, 6), a);
    write_shard(p1, meta("select_questions", 1, 2, 6), b);
    return {p0, p1};
  }
  std::string out_;
};

TEST_F(Merge, WritesOrderedOutputsAndAccountsForEveryRecord) {
  std::vector<std::string> paths = stage1();
  MergeResult r = merge_shards(paths, out_);
  EXPECT_EQ(r.input_records, 6u);
  EXPECT_EQ(r.kept, 3u);
  // Score descending, then key: records 1 and 4 tie at 0.9 (key ...b < ...e), then 2.
  EXPECT_EQ(test::read_file(r.curated_path), "[\n{\"id\": \"id1\"},\n{\"id\": \"id4\"},\n{\"id\": \"id2\"}\n]\n");
  json summary = json::parse(test::read_file(r.summary_path));
  EXPECT_EQ(summary["input_records"], 6);
  EXPECT_EQ(summary["kept"], 3);
  EXPECT_EQ(summary["by_status"]["valid"], 5);
  EXPECT_EQ(summary["by_status"]["invalid"], 1);
  EXPECT_EQ(summary["by_subset"]["detail"]["kept"], 1);
  EXPECT_EQ(summary["by_subset"]["conversation"]["kept"], 2);
  EXPECT_EQ(summary["stages"]["select_questions"]["stage"], "select_questions");
  EXPECT_EQ(summary["timings"]["select_questions"]["ranks"], 2);
  ShardData scores = read_shard(r.scores_path);
  ASSERT_EQ(scores.rows.size(), 6u);
  for (std::uint64_t i = 0; i < 6; ++i) EXPECT_EQ(scores.rows[i].index, i);
  EXPECT_EQ(scores.rows[1].global_rank, 0);
  EXPECT_EQ(scores.rows[4].global_rank, 1);
  EXPECT_EQ(scores.rows[2].global_rank, 2);
  EXPECT_EQ(scores.rows[0].kept, 0);
  EXPECT_EQ(scores.rows[5].kept, -1);
  EXPECT_EQ(scores.rows[5].record, "{\"id\": \"id5\"}");
}

TEST_F(Merge, MissingRecordIsNamed) {
  std::vector<std::string> paths = stage1({}, /*drop_last=*/true);
  try {
    merge_shards(paths, out_);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("1 input records are missing: pool indices 5"), std::string::npos) << e.what();
  }
}

TEST_F(Merge, RepeatedKeyIsNamed) {
  ShardRow again = row(4, 0.3, 0);  // rank 0 also claims record 4
  std::vector<std::string> paths = stage1({again});
  try {
    merge_shards(paths, out_);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(again.key), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("more than once"), std::string::npos) << e.what();
  }
}

TEST_F(Merge, MissingRankShardAndForeignShardAreRefused) {
  std::vector<std::string> paths = stage1();
  EXPECT_THROW(merge_shards({paths[0]}, out_), std::runtime_error);
  ShardMeta other = meta("select_questions", 1, 2, 6);
  other.input_fingerprint = "another pool";
  write_shard(paths[1], other, {row(3, 0.2, 0), row(4, 0.9, 1), row(5, NAN, -1, "invalid")});
  EXPECT_THROW(merge_shards(paths, out_), std::runtime_error);
}

TEST_F(Merge, LaterStageMustHoldExactlyTheSurvivors) {
  std::vector<std::string> paths = stage1();
  auto answer_row = [](std::uint64_t index, double score, std::int8_t selected) {
    ShardRow r = row(index, NAN, -1);
    r.record.clear();
    r.answer_scores = {float(score), float(score)};
    r.answer_score = score;
    r.selected_answers = selected;
    return r;
  };
  std::string a0 = shard_path(out_, "select_answers", 0), a1 = shard_path(out_, "select_answers", 1);
  // Survivors are 1, 2, 4. Rank 0 forgets record 2.
  write_shard(a0, meta("select_answers", 0, 2, 6), {answer_row(1, 0.3, 0)});
  write_shard(a1, meta("select_answers", 1, 2, 6), {answer_row(4, 0.8, 1)});
  std::vector<std::string> all = {paths[0], paths[1], a0, a1};
  try {
    merge_shards(all, out_);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("are missing"), std::string::npos) << e.what();
  }
  // With record 2 present the final order follows the answer scores.
  write_shard(a0, meta("select_answers", 0, 2, 6), {answer_row(1, 0.3, 0), answer_row(2, 0.9, 1)});
  MergeResult r = merge_shards(all, out_);
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(test::read_file(r.curated_path), "[\n{\"id\": \"id2\"},\n{\"id\": \"id4\"}\n]\n");
  // A record that stage 1 dropped may not appear in stage 2.
  write_shard(a1, meta("select_answers", 1, 2, 6), {answer_row(4, 0.8, 1), answer_row(3, 0.1, 0)});
  EXPECT_THROW(merge_shards(all, out_), std::runtime_error);
}

TEST_F(Merge, FindShardsListsEveryStage) {
  stage1();
  std::vector<std::string> found = find_shards(out_);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_NE(found[0].find("select_questions/rank-00000.h5"), std::string::npos);
}

}  // namespace
}  // namespace align2
