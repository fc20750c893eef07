// End-to-end cascade on one rank with the deterministic test scorer.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/curation.h"
#include "core/shard_store.h"
#include "test/pipeline_fixture.h"
#include "test/test_scorer.h"

namespace align2 {
namespace {

using nlohmann::json;

TEST(Pipeline, CascadeAccountsForEveryRecordAndIsBatchIndependent) {
  std::string dir = test::scratch_dir("pipeline");
  LocalComm comm;
  test::TestScorer scorer;
  JobConfig a = test::pipeline_config(dir, dir + "/out-b1", 1);
  CurationResult ra = run_curation(comm, a, scorer);
  EXPECT_EQ(scorer.largest_batch, 1u);

  // 60 + 40 + 90 + 7 input records; 7 are not valid (one holds a NUL byte, one Latin-1).
  EXPECT_EQ(ra.input_records, 197u);
  json summary = json::parse(test::read_file(ra.merged.summary_path));
  EXPECT_EQ(summary["input_records"], 197);
  EXPECT_EQ(summary["by_status"]["valid"], 190);
  EXPECT_EQ(summary["by_status"]["invalid"], 6);
  EXPECT_EQ(summary["by_status"]["duplicate"], 1);
  // Stage 1 per subset: floor(0.5 * N) of the scored; the one-per-image rule can only lower it.
  const json& s1 = summary["stages"]["select_questions"]["by_subset"];
  EXPECT_EQ(s1["conversation"]["scored"], 60);
  EXPECT_EQ(s1["llava_b"]["scored"], 40);
  EXPECT_EQ(s1["detail"]["scored"], 30);
  EXPECT_EQ(s1["conv"]["scored"], 30);
  // The 90 typed records share 30 images, one per type: all eligible. The 100 LLaVA records have distinct images.
  for (const char* s : {"conversation", "llava_b", "detail", "conv", "complex"})
    EXPECT_EQ(s1[s]["kept"], s1[s]["scored"].get<int>() / 2) << s;
  const json& s2 = summary["stages"]["select_answers"]["by_subset"];
  EXPECT_EQ(s2["conversation"]["scored"], 30);
  EXPECT_EQ(s2["conversation"]["kept"], 15);
  EXPECT_EQ(s2["llava_b"]["kept"], 10);
  EXPECT_EQ(s2["detail"]["kept"], 7);
  EXPECT_EQ(s2["conv"]["kept"], 7);  // floor(0.5 * 15)
  EXPECT_EQ(summary["kept"], 15 + 10 + 7 + 7 + 7);

  // scores.h5: every input record once, with its status; kept rows carry both scores.
  ShardData scores = read_shard(ra.merged.scores_path);
  ASSERT_EQ(scores.rows.size(), 197u);
  std::uint64_t kept = 0;
  for (std::uint64_t i = 0; i < scores.rows.size(); ++i) {
    const ShardRow& r = scores.rows[i];
    EXPECT_EQ(r.index, i);
    if (r.status != "valid") {
      EXPECT_TRUE(std::isnan(r.question_score));
      EXPECT_EQ(r.kept, -1);
      EXPECT_FALSE(r.message.empty());
      continue;
    }
    EXPECT_FALSE(std::isnan(r.question_score));
    if (r.kept == 1) {
      ++kept;
      EXPECT_EQ(r.selected_questions, 1);
      EXPECT_EQ(r.selected_answers, 1);
      EXPECT_FALSE(r.answer_scores.empty());
    }
  }
  EXPECT_EQ(kept, summary["kept"].get<std::uint64_t>());
  // Bytes that cannot be stored as text are escaped, not lost.
  EXPECT_EQ(scores.rows[195].record, "{\"id\": \"latin1\", \"conversations\": [{\"from\": \"human\", \"value\": \"caf\\xe9?\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}");
  EXPECT_EQ(scores.rows[195].reason, "invalid_utf8");
  EXPECT_EQ(scores.rows[196].record, "{\"id\": \"nul\\x00\"}");
  EXPECT_EQ(scores.rows[196].reason, "not_json");

  // curated.json: LLaVA JSON whose records are the input records verbatim, in score order.
  std::string curated = test::read_file(ra.merged.curated_path);
  json records = json::parse(curated);
  ASSERT_EQ(records.size(), kept);
  std::string pool_text = test::read_file(test::shared_path("data/llava/llava_instruct_60.json")) +
                          test::read_file(test::shared_path("data/llava/llava_instruct_40b.json")) +
                          test::read_file(test::shared_path("data/llava/coco2014_val_gpt4_qa_30x3.jsonl"));
  double last = INFINITY;
  for (const ShardRow& r : scores.rows) {
    if (r.kept != 1) continue;
    EXPECT_NE(pool_text.find(r.record), std::string::npos);
    EXPECT_EQ(records[std::size_t(r.global_rank)], json::parse(r.record));
  }
  for (std::size_t k = 0; k < records.size(); ++k) {
    for (const ShardRow& r : scores.rows)
      if (r.global_rank == std::int64_t(k)) {
        EXPECT_LE(r.answer_score, last);
        last = r.answer_score;
      }
  }

  // Another batch size gives byte-identical outputs.
  JobConfig b = test::pipeline_config(dir, dir + "/out-b7", 7);
  test::TestScorer scorer7;
  CurationResult rb = run_curation(comm, b, scorer7);
  EXPECT_EQ(scorer7.largest_batch, 7u);
  EXPECT_EQ(test::read_file(rb.merged.curated_path), curated);
  EXPECT_EQ(test::summary_without_timings(rb.merged.summary_path),
            test::summary_without_timings(ra.merged.summary_path));
}

TEST(Pipeline, ARecordTheScorerCannotScoreEndsWithItsReason) {
  std::string dir = test::scratch_dir("pipeline-fail");
  LocalComm comm;
  test::TestScorer scorer;
  scorer.fail_image = "000000379143.jpg";  // the first record of llava_instruct_60.json
  CurationResult r = run_curation(comm, test::pipeline_config(dir, dir + "/out", 4), scorer);
  ShardData scores = read_shard(r.merged.scores_path);
  ASSERT_EQ(scores.rows.size(), 197u);
  EXPECT_EQ(scores.rows[0].status, "invalid");
  EXPECT_EQ(scores.rows[0].reason, "bad_image");
  EXPECT_NE(scores.rows[0].message.find("000000379143.jpg"), std::string::npos);
  EXPECT_EQ(scores.rows[0].kept, -1);
  json summary = json::parse(test::read_file(r.merged.summary_path));
  EXPECT_EQ(summary["by_status"]["invalid"], 7);
  EXPECT_EQ(summary["stages"]["select_questions"]["by_subset"]["conversation"]["scored"], 59);
}

TEST(Pipeline, BrokenJsonArrayFailsWithItsPosition) {
  std::string dir = test::scratch_dir("pipeline-bad");
  test::write_file(dir + "/pool.json", "[{\"id\": 1}\n{\"id\": 2}]");
  JobConfig c = parse_job_config({{"pools", {"pool.json"}}, {"output_dir", "out"}}, dir, {}, "cfg");
  LocalComm comm;
  test::TestScorer scorer;
  try {
    run_curation(comm, c, scorer);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("pool.json: byte 11 (line 2, column 1)"), std::string::npos) << e.what();
  }
}

TEST(JobConfig, UnknownKeysAndBadValuesAreNamed) {
  std::string dir = test::scratch_dir("config");
  try {
    parse_job_config({{"pools", {"a.json"}}, {"alpah", 0.3}}, dir, {}, "job.json");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("job.json: config key \"alpah\": unknown key"), std::string::npos);
  }
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"alpha", "x"}}, dir, {}, "job.json"), std::runtime_error);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"alpha", 1.5}}, dir, {}, "job.json"), std::runtime_error);
  // Negative or huge integers are refused, not wrapped (found in review).
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"batch_size", -1}}, dir, {}, "job.json"), std::runtime_error);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"image_cost", -1}}, dir, {}, "job.json"), std::runtime_error);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}}, dir, {"batch_size=9223372036854775808"}, "job.json"),
               std::runtime_error);
  EXPECT_THROW(parse_job_config({{"pools", json::array()}}, dir, {}, "job.json"), std::runtime_error);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"subsets", {{"b.json", "x"}}}}, dir, {}, "job.json"),
               std::runtime_error);
  // --set overrides, parsed as JSON when it is JSON; paths from --set stay relative to the current folder.
  JobConfig c = parse_job_config({{"pools", {"a.json"}}, {"output_dir", "o"}}, "/base", {"alpha=0.5", "output_dir=run1"},
                                 "job.json");
  EXPECT_EQ(c.alpha, 0.5);
  EXPECT_EQ(c.output_dir, "run1");
  EXPECT_EQ(c.pools[0].path, "/base/a.json");
  // output_dir and batch_size do not change the fingerprint; alpha does.
  JobConfig d = parse_job_config({{"pools", {"a.json"}}}, "/base", {"alpha=0.5", "batch_size=3"}, "job.json");
  JobConfig e = parse_job_config({{"pools", {"a.json"}}}, "/base", {}, "job.json");
  EXPECT_EQ(c.fingerprint, d.fingerprint);
  EXPECT_NE(c.fingerprint, e.fingerprint);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}}, dir, {"noequals"}, "job.json"), std::runtime_error);
}

}  // namespace
}  // namespace align2
