// The cascade under mpirun: 3 ranks give byte-identical curated.json and summary.json
// (timings aside) to 1 rank with another batch size.
#include <gtest/gtest.h>

#include "core/pipeline/curation.h"
#include "distributed/mpi_comm.h"
#include "test/pipeline_fixture.h"
#include "test/test_rewriter.h"
#include "test/test_scorer.h"

namespace align2 {
namespace {

TEST(PipelineMpi, RanksAndBatchSizeDoNotChangeTheOutputs) {
  MpiComm comm;
  // Rank 0 picks the scratch folder; everyone uses it.
  std::vector<std::uint8_t> dir_bytes;
  if (comm.rank() == 0) {
    std::string d = test::scratch_dir("pipeline-mpi");
    dir_bytes.assign(d.begin(), d.end());
  }
  comm.broadcast(dir_bytes, 0);
  std::string dir(dir_bytes.begin(), dir_bytes.end());

  if (comm.rank() == 0) test::write_bad_records(dir);
  comm.barrier();
  test::TestScorer scorer;
  JobConfig many = test::pipeline_config(dir, dir + "/np", 3, /*write_pool=*/false);
  CurationResult r = run_curation(comm, many, scorer);
  EXPECT_EQ(r.input_records, 197u);
  // Every rank scored something in stage 1: it starts with its own planned chunks, which
  // others take over only from the far end.
  EXPECT_GT(scorer.calls, 0u);

  if (comm.rank() == 0) {
    LocalComm one;
    test::TestScorer scorer1;
    JobConfig single = test::pipeline_config(dir, dir + "/np1", 5, /*write_pool=*/false);
    CurationResult r1 = run_curation(one, single, scorer1);
    EXPECT_EQ(test::read_file(r1.merged.curated_path), test::read_file(r.merged.curated_path));
    EXPECT_EQ(test::summary_without_timings(r1.merged.summary_path),
              test::summary_without_timings(r.merged.summary_path));
    nlohmann::json summary = nlohmann::json::parse(test::read_file(r.merged.summary_path));
    EXPECT_EQ(summary["timings"]["select_questions"]["ranks"], comm.size());
  }
  comm.barrier();

  // With stage 3 (the test rewriter): ranks receive whole rewrite groups; same outputs as 1 rank.
  test::TestScorer scorer3;
  test::TestRewriter rewriter3;
  JobConfig with_rewrite = test::pipeline_config(dir, dir + "/np-rewrite", 2, /*write_pool=*/false);
  with_rewrite.rewrite.batch = 3;
  with_rewrite.run.chunk_records = 4;
  CurationResult rr = run_curation(comm, with_rewrite, scorer3, {}, &rewriter3);
  EXPECT_LE(rewriter3.largest_call, 3u);  // whole groups of rewrite_batch, whichever rank takes them
  if (comm.rank() == 0) {
    LocalComm one;
    test::TestScorer scorer1;
    test::TestRewriter rewriter1;
    JobConfig single = test::pipeline_config(dir, dir + "/np1-rewrite", 7, /*write_pool=*/false);
    single.rewrite.batch = 3;
    CurationResult r1 = run_curation(one, single, scorer1, {}, &rewriter1);
    EXPECT_EQ(test::read_file(r1.merged.curated_path), test::read_file(rr.merged.curated_path));
    EXPECT_EQ(test::summary_without_timings(r1.merged.summary_path),
              test::summary_without_timings(rr.merged.summary_path));
    nlohmann::json summary = nlohmann::json::parse(test::read_file(rr.merged.summary_path));
    EXPECT_EQ(summary["timings"]["rewrite"]["ranks"], comm.size());
    EXPECT_EQ(summary["stages"]["rewrite"]["attempted"], summary["kept"]);
  }
  comm.barrier();
}

// The score cache across ranks: rank 0 gathers every rank's entries; a cache written by 3 ranks
// serves a 1-rank run completely (and the other way round), with the same outputs.
TEST(PipelineMpi, ScoreCacheIsSharedAcrossRankCounts) {
  MpiComm comm;
  std::vector<std::uint8_t> dir_bytes;
  if (comm.rank() == 0) {
    std::string d = test::scratch_dir("pipeline-mpi-cache");
    dir_bytes.assign(d.begin(), d.end());
    test::write_bad_records(d);
  }
  comm.broadcast(dir_bytes, 0);
  std::string dir(dir_bytes.begin(), dir_bytes.end());
  comm.barrier();

  JobConfig first = test::pipeline_config(dir, dir + "/np", 3, /*write_pool=*/false);
  first.selection.score_cache = dir + "/cache";
  test::TestScorer scorer;
  CurationResult r = run_curation(comm, first, scorer);
  if (comm.rank() == 0) {
    LocalComm one;
    test::TestScorer scorer1;
    JobConfig single = test::pipeline_config(dir, dir + "/np1", 5, /*write_pool=*/false);
    single.selection.score_cache = dir + "/cache";
    CurationResult r1 = run_curation(one, single, scorer1);
    EXPECT_EQ(scorer1.samples_scored, 0u);  // everything came from the 3-rank run's cache
    EXPECT_EQ(test::read_file(r1.merged.curated_path), test::read_file(r.merged.curated_path));
  }
  comm.barrier();
  test::TestScorer again;
  JobConfig second = test::pipeline_config(dir, dir + "/np-again", 2, /*write_pool=*/false);
  second.selection.score_cache = dir + "/cache";
  CurationResult r2 = run_curation(comm, second, again);
  EXPECT_EQ(again.samples_scored, 0u);
  if (comm.rank() == 0) {
    EXPECT_EQ(test::read_file(r2.merged.curated_path), test::read_file(r.merged.curated_path));
    nlohmann::json t = nlohmann::json::parse(test::read_file(r2.merged.summary_path))["timings"];
    EXPECT_EQ(t["select_questions"]["cache_reused"], 190);
    EXPECT_EQ(t["select_answers"]["cache_reused"], 95);
  }
  comm.barrier();
}

}  // namespace
}  // namespace align2
