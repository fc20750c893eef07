// Chunking of a stage's items, the run manifest, and the progress line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/util/progress.h"
#include "core/store/work_dir.h"
#include "core/util/digest.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

TEST(WorkDir, ChunksAreCutAtMultiplesOfTheChunkSize) {
  auto c = chunk_ranges(5, 37, 16);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].begin, 5u);
  EXPECT_EQ(c[0].end, 16u);
  EXPECT_EQ(c[1].begin, 16u);
  EXPECT_EQ(c[1].end, 32u);
  EXPECT_EQ(c[2].begin, 32u);
  EXPECT_EQ(c[2].end, 37u);
  EXPECT_TRUE(chunk_ranges(7, 7, 4).empty());
  EXPECT_EQ(chunk_ranges(0, 8, 4).size(), 2u);
  EXPECT_THROW(chunk_ranges(0, 8, 0), std::invalid_argument);
  EXPECT_EQ(fs::path(chunk_path("out", "select_answers", {16, 32})).string(),
            "out/work/select_answers/000000000016-000000000032.h5");
}

TEST(WorkDir, RunManifestRefusesAnotherRunAndForceStartsOver) {
  std::string dir = test::scratch_dir("work-dir");
  EXPECT_EQ(open_run(dir, {"cfg-a", "pool-a"}, false), 0u);
  test::write_file(chunk_path(dir, "select_questions", {0, 4}), "x");
  test::write_file(dir + "/work/select_questions/000000000004-000000000008.h5.tmp-123", "partial");
  EXPECT_EQ(open_run(dir, {"cfg-a", "pool-a"}, false), 1u);  // same run: resumes, temporaries gone
  EXPECT_FALSE(fs::exists(dir + "/work/select_questions/000000000004-000000000008.h5.tmp-123"));
  EXPECT_EQ(committed_items(dir, "select_questions", {{0, 4}, {4, 8}}), 4u);
  try {
    open_run(dir, {"cfg-a", "pool-b"}, false);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("the pool changed"), std::string::npos) << e.what();
  }
  test::write_file(dir + "/curated.json", "[]");
  EXPECT_EQ(open_run(dir, {"cfg-b", "pool-b"}, true), 0u);
  EXPECT_FALSE(fs::exists(dir + "/curated.json"));
  EXPECT_FALSE(fs::exists(chunk_path(dir, "select_questions", {0, 4})));
  // Claims: one taker per chunk and attempt; a new attempt starts with none.
  EXPECT_TRUE(claim_chunk(dir, "select_answers", "a1", {0, 4}));
  EXPECT_FALSE(claim_chunk(dir, "select_answers", "a1", {0, 4}));
  EXPECT_TRUE(claim_chunk(dir, "select_answers", "a1", {4, 8}));
  EXPECT_TRUE(claim_chunk(dir, "select_answers", "a2", {0, 4}));
  EXPECT_EQ(open_run(dir, {"cfg-b", "pool-b"}, false), 0u);  // claims are not chunks
  EXPECT_FALSE(fs::exists(dir + "/work/select_answers/claims-a1"));
  EXPECT_TRUE(claim_chunk(dir, "select_answers", "a1", {0, 4}));
  test::write_file(dir + "/run.json", "not json");
  EXPECT_THROW(open_run(dir, {"cfg-b", "pool-b"}, false), std::runtime_error);
}

// A chunk is reused only when its bytes match its checksum file (checked before HDF5 opens it)
// and its rows match the rows checksum in its attributes (content HDF5's own checks do not
// cover, such as the bytes of a variable-length string).
TEST(WorkDir, AChunkIsReusedOnlyWhenItsChecksumsMatch) {
  std::string dir = test::scratch_dir("work-dir-checksum");
  PoolIndex index;
  index.entries.resize(2);
  index.entries[1].key[0] = 0xab;
  std::vector<ShardRow> rows(2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    rows[i].index = i;
    rows[i].key = index.key(i);
    rows[i].status = Status::valid;
    rows[i].question_score = 0.25 * double(i);
  }
  ShardMeta meta;
  meta.stage = "select_questions";
  meta.config_fingerprint = "cfg";
  meta.input_fingerprint = "pool";
  meta.input_records = 2;
  meta.stage_summary_json = "{\"begin\": 0, \"end\": 2}";
  const std::string path = chunk_path(dir, "select_questions", {0, 2});
  write_chunk(path, meta, rows);
  ASSERT_TRUE(fs::exists(path + ".sha256"));
  std::vector<ShardRow> got;
  std::string problem;
  ASSERT_TRUE(read_chunk(path, meta, {0, 2}, {0, 1}, index, &got, &problem)) << problem;
  EXPECT_EQ(chunk_rows_digest(got), chunk_rows_digest(rows));

  // A byte of the file changed: refused before HDF5 reads it.
  const std::string good = test::read_file(path);
  std::string bad = good;
  bad[bad.size() / 2] = char(bad[bad.size() / 2] ^ 0x40);
  test::write_file(path, bad);
  EXPECT_FALSE(read_chunk(path, meta, {0, 2}, {0, 1}, index, &got, &problem));
  EXPECT_NE(problem.find("do not match"), std::string::npos) << problem;
  // No checksum file (the writer was killed between the two renames).
  test::write_file(path, good);
  fs::remove(path + ".sha256");
  EXPECT_FALSE(read_chunk(path, meta, {0, 2}, {0, 1}, index, &got, &problem));
  EXPECT_NE(problem.find("no checksum file"), std::string::npos) << problem;

  // A well-formed file whose rows are not those its rows checksum names (one string changed,
  // the file's own checksum made to match): found by the rows checksum.
  ShardMeta stale = meta;
  stale.stage_summary_json = "{\"begin\": 0, \"end\": 2, \"rows_sha256\": \"" + chunk_rows_digest(rows) + "\"}";
  rows[1].status = Status::invalid;
  write_shard(path, stale, rows);
  test::write_file(path + ".sha256", sha256_hex(test::read_file(path)) + "\n");
  EXPECT_FALSE(read_chunk(path, meta, {0, 2}, {0, 1}, index, &got, &problem));
  EXPECT_NE(problem.find("do not match their checksum"), std::string::npos) << problem;
}

TEST(Progress, LineShowsCountsRateAndEta) {
  EXPECT_EQ(format_duration(5.4), "5s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
  ProgressMeter meter("select_questions", 200, 50, 0, nullptr);
  std::string start = meter.line(50);
  EXPECT_NE(start.find("select_questions  50/200  25%"), std::string::npos) << start;
  EXPECT_NE(start.find("ETA ?"), std::string::npos) << start;  // nothing scored in this run yet
  EXPECT_NE(start.find("(50 resumed)"), std::string::npos) << start;
  EXPECT_NE(meter.line(200).find("100%"), std::string::npos);
  EXPECT_NE(meter.line(200).find("elapsed"), std::string::npos);
  // Not a terminal and no interval: no periodic lines, only the final one.
  std::FILE* f = std::tmpfile();
  ProgressMeter quiet("s", 10, 0, 0, f);
  EXPECT_FALSE(quiet.due());
  quiet.update(5);
  quiet.finish(10);
  std::rewind(f);
  char buf[256] = {};
  std::size_t got = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string text(buf, got);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.rfind("s  10/10  100%", 0), 0u) << text;
}

}  // namespace
}  // namespace align2
