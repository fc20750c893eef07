// Merge accounting: every input record exactly once; missing and repeated keys are named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/pipeline/merge.h"
#include "core/store/shard_store.h"
#include "test/rewrite_columns.h"
#include "test/test_support.h"
#include "core/store/output_layout.h"

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

ShardRow row(std::uint64_t index, double q, std::int8_t selected, Status status = Status::valid) {
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
    std::vector<ShardRow> b = {row(3, 0.2, 0), row(4, 0.9, 1), row(5, NAN, -1, Status::invalid)};
    b[2].reason = Reason::not_json;
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
  write_shard(paths[1], other, {row(3, 0.2, 0), row(4, 0.9, 1), row(5, NAN, -1, Status::invalid)});
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

TEST_F(Merge, RepeatedKeyUnderAnotherIndexIsNamed) {
  ShardRow twin = row(2, 0.7, 1);  // rank 0's record 2 has the key of rank 1's record 4
  twin.key = row(4, 0.9, 1).key;
  std::string p0 = shard_path(out_, "select_questions", 0), p1 = shard_path(out_, "select_questions", 1);
  write_shard(p0, meta("select_questions", 0, 2, 6), {row(0, 0.1, 0), row(1, 0.9, 1), twin});
  write_shard(p1, meta("select_questions", 1, 2, 6), {row(3, 0.2, 0), row(4, 0.9, 1), row(5, 0.3, 0)});
  try {
    merge_shards({p0, p1}, out_);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("more than once: keys " + twin.key + " (pool index 4)"), std::string::npos)
        << e.what();
  }
}

// A pool of `n` records over three stages, with rows at any positions in the shards: the
// merge reads them by position, and the outputs do not depend on where rows sit.
class MergeLayout : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kN = 9000;  // more than two blocks of 4096

  static ShardRow pool_row(std::uint64_t i) {
    ShardRow r;
    r.index = i;
    // Even records: align2's 32-hex keys; odd ones: hand-made keys (both kinds are compared).
    r.key = i % 2 ? "key-" + std::to_string(i) : fmt_hex(i);
    r.id = "id" + std::to_string(i);
    r.subset = i % 5 ? "conversation" : "detail";
    r.record = "{\"id\": \"id" + std::to_string(i) + "\", \"text\": \"" + std::string(i % 50, 'x') + "\"}";
    if (i % 97 == 3) {
      r.status = Status::invalid;
      r.reason = Reason::not_json;
      r.message = "record " + std::to_string(i) + " is broken";
      return r;
    }
    r.status = Status::valid;
    r.question_score = i % 11 == 0 ? 0.5 : double((i * 7919) % 1000) / 1000.0;  // ties broken by key
    r.selected_questions = survives_questions(i) ? 1 : 0;
    r.truncated = 0;
    return r;
  }
  static std::string fmt_hex(std::uint64_t i) {
    char buffer[33];
    std::snprintf(buffer, sizeof buffer, "%032llx", static_cast<unsigned long long>(i * 2654435761ULL));
    return buffer;
  }
  static bool survives_questions(std::uint64_t i) { return i % 97 != 3 && i % 3 != 1; }
  static bool survives_answers(std::uint64_t i) { return survives_questions(i) && i % 2 == 0; }

  static ShardRow answer_row(std::uint64_t i) {
    ShardRow r = pool_row(i);
    r.record.clear();
    r.question_score = NAN;
    r.selected_questions = -1;
    if (i % 89 == 0) {  // cannot be scored in stage 2
      r.status = Status::invalid;
      r.reason = Reason::bad_image;
      r.message = "image of " + std::to_string(i) + " is broken";
      r.selected_answers = 0;
      return r;
    }
    r.answer_scores = {float(i % 13) / 13.0f, float(i % 7) / 7.0f};
    r.answer_score = (double(r.answer_scores[0]) + double(r.answer_scores[1])) / 2;
    r.selected_answers = survives_answers(i) ? 1 : 0;
    r.truncated = i % 17 == 0 ? 1 : 0;
    return r;
  }
  static ShardRow rewrite_row(std::uint64_t i) {
    ShardRow r = pool_row(i);
    r.record.clear();
    r.question_score = NAN;
    r.selected_questions = -1;
    r.rewritten_questions = {"q" + std::to_string(i)};
    r.rewritten_answers = {"a" + std::to_string(i)};
    test::fill_rewrite_columns(r, false);
    return r;
  }

  // Writes the three stages for `out`; `shuffled`: rank 0 holds the odd records in
  // descending order, rank 1 the even ones, and the later stages are reversed.
  static std::vector<std::string> write(const std::string& out, bool shuffled) {
    std::vector<std::string> paths;
    auto put = [&](const std::string& stage, const std::vector<std::vector<std::uint64_t>>& ranks,
                   ShardRow (*make)(std::uint64_t)) {
      for (int r = 0; r < 2; ++r) {
        std::vector<ShardRow> rows;
        for (std::uint64_t i : ranks[std::size_t(r)]) rows.push_back(make(i));
        paths.push_back(shard_path(out, stage, r));
        write_shard(paths.back(), meta(stage, r, 2, kN), rows);
      }
    };
    std::vector<std::vector<std::uint64_t>> stage1(2), stage2(2), stage3(2);
    for (std::uint64_t i = 0; i < kN; ++i) {
      if (shuffled) stage1[i % 2 ? 0 : 1].push_back(i);
      else stage1[i < kN / 2 ? 0 : 1].push_back(i);
    }
    if (shuffled) std::reverse(stage1[0].begin(), stage1[0].end());
    std::vector<std::uint64_t> s2, s3;
    for (std::uint64_t i = 0; i < kN; ++i) {
      if (survives_questions(i)) s2.push_back(i);
      if (survives_questions(i) && i % 89 != 0 && survives_answers(i)) s3.push_back(i);
    }
    if (shuffled) {
      std::reverse(s2.begin(), s2.end());
      std::reverse(s3.begin(), s3.end());
    }
    stage2[0].assign(s2.begin(), s2.begin() + std::ptrdiff_t(s2.size() / 3));
    stage2[1].assign(s2.begin() + std::ptrdiff_t(s2.size() / 3), s2.end());
    stage3[0].assign(s3.begin(), s3.begin() + std::ptrdiff_t(s3.size() / 2));
    stage3[1].assign(s3.begin() + std::ptrdiff_t(s3.size() / 2), s3.end());
    put("select_questions", stage1, pool_row);
    put("select_answers", stage2, answer_row);
    put("rewrite", stage3, rewrite_row);
    return paths;
  }
};

TEST_F(MergeLayout, RowsAnywhereInTheShardsGiveTheSameOutputs) {
  const std::string in_order = test::scratch_dir("merge-in-order"), shuffled = test::scratch_dir("merge-shuffled");
  MergeResult a = merge_shards(write(in_order, false), in_order);
  MergeResult b = merge_shards(write(shuffled, true), shuffled);
  EXPECT_EQ(a.kept, b.kept);
  EXPECT_GT(a.kept, 1000u);
  EXPECT_TRUE(test::read_file(a.curated_path) == test::read_file(b.curated_path));
  EXPECT_TRUE(test::read_file(a.summary_path) == test::read_file(b.summary_path));
  EXPECT_TRUE(test::read_file(a.scores_path) == test::read_file(b.scores_path)) << "scores.h5 differs";

  // The combined rows: each stage's columns joined to the record's first-stage row.
  ShardData scores = read_shard(a.scores_path);
  ASSERT_EQ(scores.rows.size(), kN);
  std::vector<std::uint64_t> by_rank(a.kept, kN);
  for (std::uint64_t i = 0; i < kN; ++i) {
    const ShardRow& r = scores.rows[i];
    SCOPED_TRACE("record " + std::to_string(i));
    ASSERT_EQ(r.index, i);
    EXPECT_EQ(r.record, pool_row(i).record);
    const bool scored2 = survives_questions(i);
    const bool failed2 = scored2 && i % 89 == 0;
    EXPECT_EQ(r.status, i % 97 == 3 || failed2 ? Status::invalid : Status::valid);
    EXPECT_EQ(r.answer_scores.size(), scored2 && !failed2 ? 2u : 0u);
    EXPECT_EQ(r.truncated, i % 97 == 3 ? -1 : (scored2 && !failed2 && i % 17 == 0 ? 1 : 0));
    const bool kept = scored2 && !failed2 && survives_answers(i);
    EXPECT_EQ(r.kept, i % 97 == 3 || failed2 ? -1 : (kept ? 1 : 0));
    EXPECT_EQ(r.rewritten_questions, kept ? std::vector<std::string>{"q" + std::to_string(i)} : std::vector<std::string>{});
    if (kept) {
      ASSERT_GE(r.global_rank, 0);
      ASSERT_LT(std::uint64_t(r.global_rank), a.kept);
      by_rank[std::size_t(r.global_rank)] = i;
    } else {
      EXPECT_EQ(r.global_rank, -1);
    }
  }
  // Global order: answer score descending, then key ascending; curated.json follows it.
  json curated = json::parse(test::read_file(a.curated_path));
  ASSERT_EQ(curated.size(), a.kept);
  for (std::size_t k = 0; k < by_rank.size(); ++k) {
    ASSERT_LT(by_rank[k], kN);
    EXPECT_EQ(curated[k]["id"], "id" + std::to_string(by_rank[k]));
    if (k == 0) continue;
    const ShardRow &x = scores.rows[by_rank[k - 1]], &y = scores.rows[by_rank[k]];
    EXPECT_TRUE(x.answer_score > y.answer_score || (x.answer_score == y.answer_score && x.key < y.key)) << k;
  }
  json summary = json::parse(test::read_file(a.summary_path));
  EXPECT_EQ(summary["input_records"], kN);
  EXPECT_EQ(summary["kept"], a.kept);
  EXPECT_EQ(summary["by_reason"]["bad_image"].get<std::uint64_t>() + summary["by_reason"]["not_json"].get<std::uint64_t>(),
            summary["by_status"]["invalid"].get<std::uint64_t>());
}

TEST_F(Merge, FindShardsListsEveryStage) {
  stage1();
  std::vector<std::string> found = find_shards(out_);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_NE(found[0].find("select_questions/rank-00000.h5"), std::string::npos);
}

}  // namespace
}  // namespace align2
