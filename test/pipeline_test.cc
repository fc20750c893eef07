// End-to-end cascade on one rank with the deterministic test scorer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
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

  // A token budget below any sample's cost: every batch is one sample; same outputs.
  JobConfig t = test::pipeline_config(dir, dir + "/out-t1", 7, false);
  t.batch_tokens = 1;
  test::TestScorer scorer_t;
  CurationResult rt = run_curation(comm, t, scorer_t);
  EXPECT_EQ(scorer_t.largest_batch, 1u);
  EXPECT_EQ(test::read_file(rt.merged.curated_path), curated);
}

// A run killed part-way leaves committed chunks behind; the rerun scores only what is
// missing or damaged and ends with the outputs of an uninterrupted run.
TEST(Pipeline, ResumesFromCommittedChunks) {
  namespace fs = std::filesystem;
  std::string dir = test::scratch_dir("pipeline-resume");
  LocalComm comm;
  test::TestScorer reference_scorer;
  CurationResult ref = run_curation(comm, test::pipeline_config(dir, dir + "/ref", 4), reference_scorer);

  JobConfig c = test::pipeline_config(dir, dir + "/run", 3, /*write_pool=*/false);
  c.chunk_records = 16;  // 197 records: 13 chunks in stage 1; 95 survivors: 6 in stage 2
  test::TestScorer first;
  run_curation(comm, c, first);
  // What a kill during stage 2 leaves: no outputs, no stage-2 shard, some stage-2 chunks;
  // and damage: a stage-1 chunk truncated, one overwritten with another chunk's rows.
  for (const char* f : {"curated.json", "scores.h5", "summary.json"}) fs::remove(c.output_dir + "/" + f);
  fs::remove_all(c.output_dir + "/shards/select_answers");
  std::string w1 = c.output_dir + "/work/select_questions/", w2 = c.output_dir + "/work/select_answers/";
  fs::remove(w2 + "000000000048-000000000064.h5");
  fs::remove(w2 + "000000000080-000000000095.h5");
  fs::resize_file(w1 + "000000000016-000000000032.h5", 100);
  fs::copy_file(w1 + "000000000000-000000000016.h5", w1 + "000000000032-000000000048.h5",
                fs::copy_options::overwrite_existing);
  fs::create_directories(c.output_dir + "/shards/select_answers");
  test::write_file(c.output_dir + "/work/select_answers/000000000000-000000000016.h5.tmp-99999", "partial");

  test::TestScorer second;
  CurationResult r = run_curation(comm, c, second);
  EXPECT_EQ(test::read_file(r.merged.curated_path), test::read_file(ref.merged.curated_path));
  EXPECT_EQ(test::summary_without_timings(r.merged.summary_path),
            test::summary_without_timings(ref.merged.summary_path));
  // Rescored: two damaged stage-1 chunks (32 records, of which 32 valid) and 31 stage-2 items.
  EXPECT_EQ(second.samples_scored, 32u + 31u);
  json timings = json::parse(test::read_file(r.merged.summary_path))["timings"];
  EXPECT_EQ(timings["select_questions"]["per_rank"][0]["resumed"], 197 - 32);
  EXPECT_EQ(timings["select_questions"]["per_rank"][0]["computed"], 32);
  EXPECT_EQ(timings["select_answers"]["per_rank"][0]["computed"], 31);
  EXPECT_FALSE(fs::exists(c.output_dir + "/work/select_answers/000000000000-000000000016.h5.tmp-99999"));

  // A finished run rerun: nothing scored, same outputs.
  test::TestScorer third;
  run_curation(comm, c, third);
  EXPECT_EQ(third.samples_scored, 0u);
  EXPECT_EQ(test::read_file(r.merged.curated_path), test::read_file(ref.merged.curated_path));
}

TEST(Pipeline, AnotherRunsFolderIsRefusedUnlessForced) {
  std::string dir = test::scratch_dir("pipeline-refuse");
  LocalComm comm;
  JobConfig c = test::pipeline_config(dir, dir + "/out", 4);
  test::TestScorer scorer;
  run_curation(comm, c, scorer);
  auto refused = [&](const JobConfig& config, test::TestScorer& s, const std::string& why) {
    try {
      run_curation(comm, config, s);
      ADD_FAILURE() << "not refused: " << why;
    } catch (const std::runtime_error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("holds another run: " + why), std::string::npos) << m;
      EXPECT_NE(m.find("--force"), std::string::npos) << m;
    }
  };
  JobConfig other = test::pipeline_config(dir, dir + "/out", 4, false);
  other.fingerprint = std::string(64, '0');  // what a changed alpha gives
  refused(other, scorer, "the job config or a model changed");
  test::TestScorer changed_model;
  changed_model.model = "test-scorer-v2";
  refused(c, changed_model, "the job config or a model changed");
  EXPECT_TRUE(std::filesystem::exists(c.output_dir + "/curated.json"));  // refused runs touch nothing

  // Keys that do not change results (batch size, chunking, threads) resume the same run.
  JobConfig rebatched = test::pipeline_config(dir, dir + "/out", 9, false);
  rebatched.chunk_records = 5;
  test::TestScorer again;
  EXPECT_NO_THROW(run_curation(comm, rebatched, again));

  CurationOptions force;
  force.force = true;
  test::TestScorer forced;
  forced.model = "test-scorer-v2";
  run_curation(comm, c, forced, force);
  EXPECT_EQ(forced.samples_scored, 190u + 95u);  // everything scored again
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
