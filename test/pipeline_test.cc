// End-to-end cascade on one rank with the deterministic test scorer.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "core/pipeline/curation.h"
#include "core/rewrite/rewrite_stage.h"
#include "core/store/score_cache.h"
#include "core/util/version.h"
#include "core/store/shard_store.h"
#include "test/pipeline_fixture.h"
#include "test/test_rewriter.h"
#include "test/test_scorer.h"
#include "core/util/stop.h"

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
    if (r.status != Status::valid) {
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
  EXPECT_EQ(scores.rows[195].reason, Reason::invalid_utf8);
  EXPECT_EQ(scores.rows[196].record, "{\"id\": \"nul\\x00\"}");
  EXPECT_EQ(scores.rows[196].reason, Reason::not_json);

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
    const json& out = records[std::size_t(r.global_rank)];
    test::expect_llava_training_form(out);
    json in = json::parse(r.record);
    if (in.contains("conversations")) {
      EXPECT_EQ(out, in);
    } else {  // the GPT-4 QA form, in conversation form
      EXPECT_EQ(out["id"], in["id"]);
      EXPECT_EQ(out["image"], in["image"]);
      EXPECT_EQ(out["type"], in["type"]);
      EXPECT_EQ(out["conversations"][0]["value"], "<image>\n" + in["instruction"].get<std::string>());
      EXPECT_EQ(out["conversations"][1]["value"], in["output"]);
    }
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
  t.selection.batch_tokens = 1;
  test::TestScorer scorer_t;
  CurationResult rt = run_curation(comm, t, scorer_t);
  EXPECT_EQ(scorer_t.largest_batch, 1u);
  EXPECT_EQ(test::read_file(rt.merged.curated_path), curated);
}

// A scorer whose forwards batch (group_size 3) is called on fixed groups of 3 consecutive
// stage positions, whatever the chunking: stage 1's calls never mix two groups and never split
// one, batch_size and batch_tokens do not cut them, and the outputs equal the one-per-call run's
// (the double's scores do not depend on batchmates).
TEST(Pipeline, BatchingScorersGetFixedGroups) {
  std::string dir = test::scratch_dir("pipeline-groups");
  LocalComm comm;
  test::TestScorer single;
  CurationResult ref = run_curation(comm, test::pipeline_config(dir, dir + "/ref", 1), single);
  for (std::uint64_t chunk : {4u, 7u, 256u}) {
    JobConfig c = test::pipeline_config(dir, dir + "/g" + std::to_string(chunk), 2);
    c.run.chunk_records = chunk;
    test::TestScorer grouped;
    grouped.group = 3;
    CurationResult r = run_curation(comm, c, grouped);
    std::set<std::uint64_t> groups;
    std::size_t scored = 0;
    for (const std::vector<std::uint64_t>& call : grouped.question_calls) {
      ASSERT_FALSE(call.empty());
      for (std::uint64_t i : call) EXPECT_EQ(i / 3, call[0] / 3) << "chunk_records " << chunk;
      EXPECT_TRUE(groups.insert(call[0] / 3).second) << "group " << call[0] / 3 << " split, chunk_records " << chunk;
      scored += call.size();
    }
    EXPECT_EQ(scored, 190u);  // every valid record once
    EXPECT_EQ(grouped.largest_batch, 3u);
    EXPECT_EQ(test::read_file(r.merged.curated_path), test::read_file(ref.merged.curated_path));
  }
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
  c.run.chunk_records = 16;  // 197 records: 13 chunks in stage 1; 95 survivors: 6 in stage 2
  test::TestScorer first;
  run_curation(comm, c, first);
  // What a kill during stage 2 leaves: no outputs, no stage-2 shard, some stage-2 chunks;
  // and damage: a stage-1 chunk truncated, one overwritten with another chunk's rows.
  for (const char* f : {"curated.json", "scores.h5", "summary.json"}) fs::remove(c.run.output_dir + "/" + f);
  fs::remove_all(c.run.output_dir + "/shards/select_answers");
  std::string w1 = c.run.output_dir + "/work/select_questions/", w2 = c.run.output_dir + "/work/select_answers/";
  fs::remove(w2 + "000000000048-000000000064.h5");
  fs::remove(w2 + "000000000080-000000000095.h5");
  fs::resize_file(w1 + "000000000016-000000000032.h5", 100);
  fs::copy_file(w1 + "000000000000-000000000016.h5", w1 + "000000000032-000000000048.h5",
                fs::copy_options::overwrite_existing);
  fs::create_directories(c.run.output_dir + "/shards/select_answers");
  test::write_file(c.run.output_dir + "/work/select_answers/000000000000-000000000016.h5.tmp-99999", "partial");

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
  EXPECT_FALSE(fs::exists(c.run.output_dir + "/work/select_answers/000000000000-000000000016.h5.tmp-99999"));

  // A finished run rerun: nothing scored, same outputs.
  test::TestScorer third;
  run_curation(comm, c, third);
  EXPECT_EQ(third.samples_scored, 0u);
  EXPECT_EQ(test::read_file(r.merged.curated_path), test::read_file(ref.merged.curated_path));
}

// A stop request (Slurm's SIGUSR1 / SIGTERM) ends the run at the next chunk boundary with
// everything before it committed; the rerun resumes and ends as an uninterrupted run.
class StopAfter : public test::TestScorer {
 public:
  explicit StopAfter(std::size_t calls) : left_(calls) {}
  void score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                     std::vector<ScoreFailure>* failures) override {
    test::TestScorer::score_answers(samples, out, failures);
    if (left_ && --left_ == 0) request_stop(SIGUSR1);
  }

 private:
  std::size_t left_;
};

TEST(Pipeline, AStopRequestCommitsAndTheRerunResumes) {
  std::string dir = test::scratch_dir("pipeline-stop");
  LocalComm comm;
  test::TestScorer reference_scorer;
  CurationResult ref = run_curation(comm, test::pipeline_config(dir, dir + "/ref", 4), reference_scorer);
  JobConfig c = test::pipeline_config(dir, dir + "/run", 4, false);
  c.run.chunk_records = 10;
  StopAfter stopping(5);  // the signal arrives during stage 2's fifth scorer call (second chunk)
  try {
    run_curation(comm, c, stopping);
    FAIL() << "not stopped";
  } catch (const Interrupted& e) {
    EXPECT_NE(std::string(e.what()).find("stopped by signal 10 in stage select_answers"), std::string::npos) << e.what();
  }
  request_stop(0);
  EXPECT_FALSE(std::filesystem::exists(c.run.output_dir + "/summary.json"));
  test::TestScorer second;
  CurationResult r = run_curation(comm, c, second);
  EXPECT_EQ(second.samples_scored, 95u - 20u);  // stage 1 and two stage-2 chunks were committed
  EXPECT_EQ(test::read_file(r.merged.curated_path), test::read_file(ref.merged.curated_path));
  EXPECT_EQ(test::summary_without_timings(r.merged.summary_path),
            test::summary_without_timings(ref.merged.summary_path));
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
  EXPECT_TRUE(std::filesystem::exists(c.run.output_dir + "/curated.json"));  // refused runs touch nothing

  // Keys that do not change results (batch size, chunking, threads) resume the same run.
  JobConfig rebatched = test::pipeline_config(dir, dir + "/out", 9, false);
  rebatched.run.chunk_records = 5;
  test::TestScorer again;
  EXPECT_NO_THROW(run_curation(comm, rebatched, again));

  CurationOptions force;
  force.force = true;
  test::TestScorer forced;
  forced.model = "test-scorer-v2";
  run_curation(comm, c, forced, force);
  EXPECT_EQ(forced.samples_scored, 190u + 95u);  // everything scored again
}

// Stage 3 with the deterministic test rewriter: every curated sample is attempted, the counts
// add up, curated.json holds the kept rewrites (and nothing else changed), scores.h5 keeps both
// texts and the review probabilities, and the rewrite groups make the result independent of
// batch size; a resumed stage 3 ends the same.
TEST(Pipeline, RewriteStageKeepsTheBetterVersionOfEveryTurn) {
  namespace fs = std::filesystem;
  std::string dir = test::scratch_dir("pipeline-rewrite");
  LocalComm comm;
  test::TestScorer scorer;
  test::TestRewriter rewriter;
  JobConfig c = test::pipeline_config(dir, dir + "/out", 4);
  c.rewrite.batch = 4;
  c.run.chunk_records = 8;
  CurationResult r = run_curation(comm, c, scorer, {}, &rewriter);
  EXPECT_EQ(rewriter.largest_call, 4u);
  // Each stage releases its model when it is done: a rank holds one stage's model at a time.
  EXPECT_EQ(scorer.releases, 2u);
  EXPECT_EQ(rewriter.releases, 1u);
  json summary = json::parse(test::read_file(r.merged.summary_path));
  const json& rw = summary["stages"]["rewrite"];
  const std::uint64_t curated = summary["kept"].get<std::uint64_t>();
  EXPECT_EQ(rw["attempted"], curated);
  EXPECT_EQ(rw["kept_rewrite"].get<std::uint64_t>() + rw["kept_original"].get<std::uint64_t>() +
                rw["fallback"].get<std::uint64_t>(),
            curated);
  EXPECT_GT(rw["kept_rewrite"].get<std::uint64_t>(), 0u);
  EXPECT_GT(rw["fallback"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(rw["turns"]["attempted"].get<std::uint64_t>(),
            rw["turns"]["kept_rewrite"].get<std::uint64_t>() + rw["turns"]["kept_original"].get<std::uint64_t>() +
                rw["turns"]["fallback"].get<std::uint64_t>());
  EXPECT_EQ(rw["turns"]["by_reason"]["malformed"].get<std::uint64_t>() +
                rw["turns"]["by_reason"]["truncated"].get<std::uint64_t>(),
            rw["turns"]["fallback"].get<std::uint64_t>());
  EXPECT_EQ(summary["timings"]["rewrite"]["ranks"], 1);

  // scores.h5: curated rows carry one entry per turn in every rewrite column; curated.json
  // holds each kept rewrite in place of its turn and the original elsewhere.
  ShardData scores = read_shard(r.merged.scores_path);
  json out = json::parse(test::read_file(r.merged.curated_path));
  ASSERT_EQ(out.size(), curated);
  std::uint64_t rewritten_records = 0;
  for (const ShardRow& row : scores.rows) {
    if (row.kept != 1) {
      EXPECT_TRUE(row.rewrite_kept.empty());
      continue;
    }
    json original = json::parse(row.record);
    const json& written = out[std::size_t(row.global_rank)];
    ASSERT_EQ(row.rewrite_kept.size(), row.rewritten_questions.size());
    bool any = false;
    test::expect_llava_training_form(written);
    // The GPT-4 QA form's instruction reaches LLaVA's training as "<image>\n" + instruction, and
    // so does its kept rewrite (which, like the instruction, holds no tag).
    const bool gpt4_form = !original.contains("conversations");
    for (std::size_t t = 0; t < row.rewrite_kept.size(); ++t) {
      std::string q = gpt4_form ? "<image>\n" + original["instruction"].get<std::string>()
                                : original["conversations"][2 * t]["value"].get<std::string>();
      std::string got = written["conversations"][2 * t]["value"].get<std::string>();
      if (row.rewrite_kept[t] == 1) {
        any = true;
        EXPECT_EQ(got, (gpt4_form ? "<image>\n" : "") + row.rewritten_questions[t]);
        EXPECT_NE(got.find("Rephrased: "), std::string::npos);
        EXPECT_EQ(got.find("<image>") != std::string::npos, q.find("<image>") != std::string::npos);  // placement kept
        EXPECT_GE(row.review_p[t], 0.5f);
        EXPECT_TRUE(row.rewrite_reasons[t].empty());
      } else {
        EXPECT_EQ(got, q);
        if (!row.rewrite_reasons[t].empty()) {
          EXPECT_TRUE(std::isnan(row.review_p[t]));
        }
      }
    }
    rewritten_records += any;
    if (!any && !gpt4_form) {
      EXPECT_EQ(written.dump(), original.dump());
    }
    if (!any && gpt4_form) {
      EXPECT_EQ(written["conversations"][1]["value"], original["output"]);
      EXPECT_EQ(written["type"], original["type"]);
    }
  }
  EXPECT_EQ(rewritten_records, rw["kept_rewrite"].get<std::uint64_t>());

  // Another batch size and chunking, and a resumed stage 3: the same outputs.
  JobConfig b = test::pipeline_config(dir, dir + "/out-b", 9, false);
  b.rewrite.batch = 4;
  b.run.chunk_records = 5;  // rounded to whole groups of 4
  test::TestScorer scorer_b;
  test::TestRewriter rewriter_b;
  CurationResult rb = run_curation(comm, b, scorer_b, {}, &rewriter_b);
  EXPECT_EQ(test::read_file(rb.merged.curated_path), test::read_file(r.merged.curated_path));
  EXPECT_EQ(test::summary_without_timings(rb.merged.summary_path), test::summary_without_timings(r.merged.summary_path));
  fs::remove(b.run.output_dir + "/summary.json");
  fs::remove_all(b.run.output_dir + "/shards/rewrite");
  fs::remove(b.run.output_dir + "/work/rewrite/000000000004-000000000008.h5");
  test::TestRewriter rewriter_c;
  test::TestScorer scorer_c;
  CurationResult rc = run_curation(comm, b, scorer_c, {}, &rewriter_c);
  EXPECT_EQ(rewriter_c.samples_rewritten, 4u);
  EXPECT_EQ(scorer_c.samples_scored, 0u);
  EXPECT_EQ(test::read_file(rc.merged.curated_path), test::read_file(r.merged.curated_path));
}

// align2 rewrite's core: stage 3 alone over the whole pool. Every valid record is attempted
// and ends in curated.json in pool order with its kept rewrites; invalid records are in
// scores.h5 with their status; a deleted chunk is the only work redone; batch size and
// chunking do not change the outputs; a curate run's folder is refused.
// The demo's job (examples/demo: a LLaVA JSON array and a GPT-4 QA JSONL file) with the test
// doubles in place of its models: every curated record is one LLaVA's training reads.
TEST(Pipeline, DemoCuratedRecordsAreInLlavaTrainingForm) {
  std::string dir = test::scratch_dir("pipeline-demo-form");
  LocalComm comm;
  test::TestScorer scorer;
  test::TestRewriter rewriter;
  JobConfig c = load_job_config(test::source_path("examples/demo/job.json"), {"output_dir=" + dir + "/out"});
  CurationResult r = run_curation(comm, c, scorer, {}, &rewriter);
  json records = json::parse(test::read_file(r.merged.curated_path));
  ASSERT_EQ(records.size(), r.merged.kept);
  std::size_t from_gpt4 = 0, rewritten = 0;
  for (const json& rec : records) {
    test::expect_llava_training_form(rec);
    EXPECT_FALSE(rec.contains("instruction") || rec.contains("output")) << rec.dump();
    from_gpt4 += rec.contains("type");
    rewritten += rec["conversations"][0]["value"].get<std::string>().find("Rephrased") != std::string::npos;
  }
  EXPECT_GT(from_gpt4, 0u);  // both files are represented, the GPT-4 QA records converted
  EXPECT_LT(from_gpt4, records.size());
  EXPECT_GT(rewritten, 0u);
}

TEST(Pipeline, RewriteOnlyRewritesEveryValidRecordInPoolOrder) {
  namespace fs = std::filesystem;
  std::string dir = test::scratch_dir("pipeline-rewrite-only");
  LocalComm comm;
  JobConfig c = test::pipeline_config(dir, dir + "/out", 4);
  c.rewrite.batch = 4;
  c.run.chunk_records = 16;
  auto rewriter_for = [] {
    test::TestRewriter r;
    r.fail_image = "000000379143.jpg";  // the first record of llava_instruct_60.json: its turns keep their originals
    return r;
  };
  test::TestRewriter rewriter = rewriter_for();
  CurationResult r = run_rewrite(comm, c, rewriter);
  EXPECT_EQ(rewriter.samples_rewritten, 190u);  // 197 input records, 190 valid
  EXPECT_LE(rewriter.largest_call, 4u);
  EXPECT_EQ(r.input_records, 197u);
  json summary = json::parse(test::read_file(r.merged.summary_path));
  EXPECT_EQ(summary["input_records"], 197);
  EXPECT_EQ(summary["by_status"]["valid"], 190);
  EXPECT_EQ(summary["kept"], 190);
  EXPECT_EQ(summary["stages"].size(), 1u);
  const json& rw = summary["stages"]["rewrite"];
  EXPECT_EQ(rw, r.rewrite);
  EXPECT_EQ(rw["attempted"], 190);
  EXPECT_EQ(rw["kept_rewrite"].get<std::uint64_t>() + rw["kept_original"].get<std::uint64_t>() +
                rw["fallback"].get<std::uint64_t>(),
            190u);
  EXPECT_GT(rw["kept_rewrite"].get<std::uint64_t>(), 0u);
  EXPECT_GT(rw["turns"]["by_reason"]["bad_image"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(rw["by_subset"]["conversation"]["attempted"], 60);

  ShardData scores = read_shard(r.merged.scores_path);
  ASSERT_EQ(scores.rows.size(), 197u);
  json out = json::parse(test::read_file(r.merged.curated_path));
  ASSERT_EQ(out.size(), 190u);
  std::int64_t position = 0;
  std::uint64_t rewritten = 0, redo = 0;  // redo: valid records of items [16, 32)
  for (const ShardRow& row : scores.rows) {
    if (row.status != Status::valid) {
      EXPECT_EQ(row.kept, -1);
      EXPECT_EQ(row.global_rank, -1);
      EXPECT_NE(row.reason, Reason::none);
      EXPECT_TRUE(row.rewrite_kept.empty());
      continue;
    }
    EXPECT_EQ(row.kept, 1);
    EXPECT_EQ(row.global_rank, position);  // pool order
    EXPECT_FALSE(row.rewrite_kept.empty());
    EXPECT_EQ(out[std::size_t(position)], json::parse(curated_record(row.record, row)));
    bool any = false;
    for (std::int8_t k : row.rewrite_kept) any |= k == 1;
    rewritten += any;
    redo += row.index >= 16 && row.index < 32;
    ++position;
  }
  EXPECT_EQ(rewritten, rw["kept_rewrite"].get<std::uint64_t>());
  EXPECT_EQ(scores.rows[0].rewrite_reasons[0], "bad_image");
  EXPECT_EQ(out[0], json::parse(scores.rows[0].record));
  EXPECT_EQ(scores.rows[195].reason, Reason::invalid_utf8);

  // Another batch size, rewrite groups cut into other chunks: the same outputs.
  JobConfig b = test::pipeline_config(dir, dir + "/out-b", 9, false);
  b.rewrite.batch = 4;
  b.run.chunk_records = 5;  // rounded to whole groups of 4
  test::TestRewriter rewriter_b = rewriter_for();
  CurationResult rb = run_rewrite(comm, b, rewriter_b);
  EXPECT_EQ(test::read_file(rb.merged.curated_path), test::read_file(r.merged.curated_path));
  EXPECT_EQ(test::summary_without_timings(rb.merged.summary_path), test::summary_without_timings(r.merged.summary_path));

  // Resume after a kill: outputs, shard and one chunk gone; only that chunk is rewritten again.
  for (const char* f : {"curated.json", "scores.h5", "summary.json"}) fs::remove(c.run.output_dir + "/" + f);
  fs::remove_all(c.run.output_dir + "/shards/rewrite");
  fs::remove(c.run.output_dir + "/work/rewrite/000000000016-000000000032.h5");
  test::TestRewriter rewriter_c = rewriter_for();
  CurationResult rc = run_rewrite(comm, c, rewriter_c);
  EXPECT_EQ(rewriter_c.samples_rewritten, redo);
  EXPECT_EQ(test::read_file(rc.merged.curated_path), test::read_file(r.merged.curated_path));
  json timings = json::parse(test::read_file(rc.merged.summary_path))["timings"]["rewrite"]["per_rank"][0];
  EXPECT_EQ(timings["computed"], 16);
  EXPECT_EQ(timings["resumed"], 197 - 16);

  // A curate run's folder is another run.
  test::TestScorer scorer;
  run_curation(comm, test::pipeline_config(dir, dir + "/curate", 4, false), scorer);
  test::TestRewriter rewriter_d;
  try {
    run_rewrite(comm, test::pipeline_config(dir, dir + "/curate", 4, false), rewriter_d);
    ADD_FAILURE() << "a curate folder was not refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  EXPECT_EQ(rewriter_d.samples_rewritten, 0u);
}

TEST(Pipeline, ARecordTheScorerCannotScoreEndsWithItsReason) {
  std::string dir = test::scratch_dir("pipeline-fail");
  LocalComm comm;
  test::TestScorer scorer;
  scorer.fail_image = "000000379143.jpg";  // the first record of llava_instruct_60.json
  CurationResult r = run_curation(comm, test::pipeline_config(dir, dir + "/out", 4), scorer);
  ShardData scores = read_shard(r.merged.scores_path);
  ASSERT_EQ(scores.rows.size(), 197u);
  EXPECT_EQ(scores.rows[0].status, Status::invalid);
  EXPECT_EQ(scores.rows[0].reason, Reason::bad_image);
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

// The columns of scores.h5 that a run decides (not the record texts or messages), as text.
std::string decided_columns(const std::string& scores_path) {
  std::string out;
  for (const ShardRow& r : read_shard(scores_path, ShardReadOptions{false}).rows) {
    out += fmt::format("{} {} {} {} {} {} {} {} {}:", r.index, r.key, status_name(r.status), reason_name(r.reason), r.question_score,
                       r.answer_score, r.selected_questions, r.selected_answers, r.global_rank);
    for (float a : r.answer_scores) out += fmt::format(" {}", a);
    out += "\n";
  }
  return out;
}

std::uint64_t stage_count(const json& summary, const char* stage, const char* count) {
  return summary["timings"][stage][count].get<std::uint64_t>();
}

// Nightly refresh: with score_cache set, a run over a pool where some records are new or
// changed scores only those (stage 2: only survivors it has not scored before), says so in
// summary.json, and its outputs equal a run's without the cache.
TEST(Pipeline, ScoreCacheScoresOnlyNewOrChangedRecords) {
  namespace fs = std::filesystem;
  std::string dir = test::scratch_dir("pipeline-cache");
  LocalComm comm;
  JobConfig night1 = test::pipeline_config(dir, dir + "/night1", 4);
  night1.selection.score_cache = dir + "/cache";
  test::TestScorer s1;
  CurationResult r1 = run_curation(comm, night1, s1);
  json sum1 = json::parse(test::read_file(r1.merged.summary_path));
  EXPECT_EQ(stage_count(sum1, "select_questions", "cache_reused"), 0u);
  EXPECT_EQ(stage_count(sum1, "select_questions", "model_scored"), 190u);
  EXPECT_EQ(stage_count(sum1, "select_answers", "model_scored"), 95u);
  EXPECT_TRUE(fs::exists(score_cache_path(night1.selection.score_cache, "select_questions",
                                          align2_version() + "|select_questions|" + s1.model)));

  // The next night's pool: one record changed, one removed, three new ones.
  fs::create_directories(dir + "/pool2");
  json p60 = json::parse(test::read_file(test::shared_path("data/llava/llava_instruct_60.json")));
  p60[3]["conversations"][1]["value"] = p60[3]["conversations"][1]["value"].get<std::string>() + " Edited.";
  p60.erase(10);
  test::write_file(dir + "/pool2/llava_instruct_60.json", p60.dump(1));
  json p40 = json::parse(test::read_file(test::shared_path("data/llava/llava_instruct_40b.json")));
  std::string added;
  for (int i = 0; i < 3; ++i) {
    json r = p40[i];
    r["id"] = fmt::format("new-{}", i);
    r["conversations"][0]["value"] = r["conversations"][0]["value"].get<std::string>() + " Be brief.";
    added += r.dump() + "\n";
  }
  test::write_file(dir + "/pool2/new.jsonl", added);
  auto night2_config = [&](const std::string& out, const std::string& cache) {
    JobConfig c = test::pipeline_config(dir, out, 3, false);
    c.pool.files[0].path = dir + "/pool2/llava_instruct_60.json";
    c.pool.files.push_back({dir + "/pool2/new.jsonl", ""});
    c.selection.score_cache = cache;
    return c;
  };

  test::TestScorer s2;
  CurationResult r2 = run_curation(comm, night2_config(dir + "/night2", dir + "/cache"), s2);
  json sum2 = json::parse(test::read_file(r2.merged.summary_path));
  EXPECT_EQ(sum2["by_status"]["valid"], 190 - 1 + 3);
  EXPECT_EQ(stage_count(sum2, "select_questions", "model_scored"), 1u + 3u);  // the changed and the new
  EXPECT_EQ(stage_count(sum2, "select_questions", "cache_reused"), 190u - 2u);
  // Stage 2 scores the survivors that were not survivors (with the same content) last night.
  std::set<std::string> survived1;
  for (const ShardRow& r : read_shard(r1.merged.scores_path, ShardReadOptions{false}).rows)
    if (r.selected_questions == 1) survived1.insert(r.key);
  std::uint64_t survivors2 = 0, new_survivors = 0;
  for (const ShardRow& r : read_shard(r2.merged.scores_path, ShardReadOptions{false}).rows)
    if (r.selected_questions == 1) {
      ++survivors2;
      new_survivors += !survived1.count(r.key);
    }
  EXPECT_GT(new_survivors, 0u);
  EXPECT_EQ(stage_count(sum2, "select_answers", "model_scored"), new_survivors);
  EXPECT_EQ(stage_count(sum2, "select_answers", "cache_reused"), survivors2 - new_survivors);
  EXPECT_EQ(s2.samples_scored, 4 + new_survivors);

  // A run without the cache: the same outputs.
  test::TestScorer full;
  CurationResult ref = run_curation(comm, night2_config(dir + "/full", ""), full);
  EXPECT_EQ(full.samples_scored, 192u + survivors2);
  EXPECT_EQ(test::read_file(r2.merged.curated_path), test::read_file(ref.merged.curated_path));
  EXPECT_EQ(test::summary_without_timings(r2.merged.summary_path), test::summary_without_timings(ref.merged.summary_path));
  EXPECT_EQ(decided_columns(r2.merged.scores_path), decided_columns(ref.merged.scores_path));
  EXPECT_FALSE(json::parse(test::read_file(ref.merged.summary_path))["timings"]["select_questions"].contains("cache_reused"));

  // The same pool again: nothing is scored. Then the cache of stage 1 damaged: it is ignored
  // (stage 1 scored again, stage 2 still reused) and the outputs stay the same.
  test::TestScorer s3;
  CurationResult r3 = run_curation(comm, night2_config(dir + "/night3", dir + "/cache"), s3);
  EXPECT_EQ(s3.samples_scored, 0u);
  EXPECT_EQ(test::read_file(r3.merged.curated_path), test::read_file(ref.merged.curated_path));
  const std::string cache1 =
      score_cache_path(dir + "/cache", "select_questions", align2_version() + "|select_questions|" + s1.model);
  fs::resize_file(cache1, fs::file_size(cache1) / 2);
  test::TestScorer s4;
  CurationResult r4 = run_curation(comm, night2_config(dir + "/night4", dir + "/cache"), s4);
  EXPECT_EQ(s4.samples_scored, 192u);
  EXPECT_EQ(test::read_file(r4.merged.curated_path), test::read_file(ref.merged.curated_path));

  // Another model: a cache of its own, everything scored.
  test::TestScorer s5;
  s5.model = "test-scorer-v2";
  run_curation(comm, night2_config(dir + "/night5", dir + "/cache"), s5);
  EXPECT_EQ(s5.samples_scored, 192u + survivors2);
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
  EXPECT_EQ(c.selection.alpha, 0.5);
  EXPECT_EQ(c.run.output_dir, "run1");
  EXPECT_EQ(c.pool.files[0].path, "/base/a.json");
  // output_dir and batch_size do not change the fingerprint; alpha does.
  JobConfig d = parse_job_config({{"pools", {"a.json"}}}, "/base", {"alpha=0.5", "batch_size=3"}, "job.json");
  JobConfig e = parse_job_config({{"pools", {"a.json"}}}, "/base", {}, "job.json");
  EXPECT_EQ(c.fingerprint, d.fingerprint);
  EXPECT_NE(c.fingerprint, e.fingerprint);
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}}, dir, {"noequals"}, "job.json"), std::runtime_error);
  // image_aspect: "" (each model's own), "pad" or "square"; it changes scores, so the fingerprint.
  EXPECT_THROW(parse_job_config({{"pools", {"a.json"}}, {"image_aspect", "wide"}}, dir, {}, "job.json"),
               std::runtime_error);
  JobConfig sq = parse_job_config({{"pools", {"a.json"}}}, "/base", {"image_aspect=square"}, "job.json");
  EXPECT_EQ(sq.models.image_aspect, "square");
  EXPECT_NE(sq.fingerprint, e.fingerprint);
}

// The authors rank each source file separately: with neither `subsets`, a pool entry's
// "subset" nor `subset_field`, each file is its own subset, named after its file name.
TEST(JobConfig, EachPoolFileIsItsOwnSubsetByDefault) {
  JobConfig c = parse_job_config({{"pools", {"llava/conversation_58k.json", "llava/detail_23k.json"}}}, "/b", {}, "j");
  ASSERT_EQ(c.pool.files.size(), 2u);
  EXPECT_EQ(c.pool.files[0].subset, "conversation_58k.json");
  EXPECT_EQ(c.pool.files[1].subset, "detail_23k.json");
  // Any naming turns the default off: files without a name fall back to `subset_field`, then "all".
  JobConfig m = parse_job_config({{"pools", {"a.json", "b.json"}}, {"subsets", {{"a.json", "conv"}}}}, "/b", {}, "j");
  EXPECT_EQ(m.pool.files[0].subset, "conv");
  EXPECT_EQ(m.pool.files[1].subset, "");
  JobConfig f = parse_job_config({{"pools", {"a.json", "b.json"}}, {"subset_field", "type"}}, "/b", {}, "j");
  EXPECT_EQ(f.pool.files[0].subset, "");
  JobConfig e = parse_job_config({{"pools", {json{{"path", "a.json"}, {"subset", "x"}}, "b.json"}}}, "/b", {}, "j");
  EXPECT_EQ(e.pool.files[1].subset, "");
}

TEST(Pipeline, EachFileIsRankedSeparatelyByDefault) {
  std::string dir = test::scratch_dir("pipeline-file-subsets");
  LocalComm comm;
  test::TestScorer scorer;
  JobConfig c = parse_job_config({{"pools", {test::shared_path("data/llava/llava_instruct_60.json"),
                                             test::shared_path("data/llava/llava_instruct_40b.json")}},
                                  {"alpha", 0.5}, {"beta", 0.5}, {"rewrite", false}, {"output_dir", dir + "/out"}},
                                 dir, {}, "test config");
  CurationResult r = run_curation(comm, c, scorer);
  json summary = json::parse(test::read_file(r.merged.summary_path));
  const json& s1 = summary["stages"]["select_questions"]["by_subset"];
  ASSERT_EQ(s1.size(), 2u) << s1;
  EXPECT_EQ(s1["llava_instruct_60.json"]["scored"], 60);
  EXPECT_EQ(s1["llava_instruct_60.json"]["kept"], 30);
  EXPECT_EQ(s1["llava_instruct_40b.json"]["scored"], 40);
  EXPECT_EQ(s1["llava_instruct_40b.json"]["kept"], 20);
  EXPECT_EQ(summary["by_subset"]["llava_instruct_40b.json"]["kept"], 10);
}

}  // namespace
}  // namespace align2
