// The score cache file and the sample digest (core/store/score_cache.h).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/model/model_fingerprint.h"
#include "core/store/score_cache.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

SampleDigest digest_of(std::uint8_t b) {
  SampleDigest d{};
  d.fill(b);
  return d;
}

TEST(ScoreCache, SavesLoadsAndFindsExactScores) {
  std::string dir = test::scratch_dir("score-cache");
  ScoreCache c(dir, "select_answers", "model-a");
  const float a[] = {0.125f, -3.5f, 1e-7f}, b[] = {2.0f};
  c.add(digest_of(9), a, 3);
  c.add(digest_of(1), b, 1);
  c.add(digest_of(9), b, 1);  // a repeat: the first entry stays
  c.save();
  EXPECT_EQ(c.path(), score_cache_path(dir, "select_answers", "model-a"));
  ASSERT_TRUE(fs::exists(c.path()));

  ScoreCache loaded(dir, "select_answers", "model-a");
  EXPECT_EQ(loaded.load(), "");
  EXPECT_EQ(loaded.size(), 2u);
  std::vector<float> got;
  ASSERT_TRUE(loaded.find(digest_of(9), &got));
  EXPECT_EQ(got, std::vector<float>(a, a + 3));
  ASSERT_TRUE(loaded.find(digest_of(1), &got));
  EXPECT_EQ(got, std::vector<float>{2.0f});
  EXPECT_FALSE(loaded.find(digest_of(2), &got));

  // Through bytes (the gather to rank 0) and pruned to the samples still in the pool.
  ScoreCache copy(dir, "select_answers", "model-a");
  copy.add_serialized(loaded.serialize());
  copy.keep_only({digest_of(9)});
  EXPECT_EQ(copy.size(), 1u);
  ASSERT_TRUE(copy.find(digest_of(9), &got));
  EXPECT_EQ(got, std::vector<float>(a, a + 3));

  // Another model has a file of its own; a file of another model under this name is ignored.
  ScoreCache other(dir, "select_answers", "model-b");
  EXPECT_NE(other.path(), c.path());
  EXPECT_EQ(other.load(), "");
  EXPECT_EQ(other.size(), 0u);
  fs::copy_file(c.path(), other.path());
  EXPECT_NE(other.load().find("another stage or model"), std::string::npos);
  EXPECT_EQ(other.size(), 0u);

  // A damaged file is reported and ignored.
  fs::resize_file(c.path(), 200);
  ScoreCache damaged(dir, "select_answers", "model-a");
  std::string problem = damaged.load();
  EXPECT_NE(problem.find(c.path()), std::string::npos) << problem;
  EXPECT_NE(problem.find("cannot be read"), std::string::npos) << problem;
  EXPECT_EQ(damaged.size(), 0u);
}

TEST(ScoreCache, DigestCoversTheKeyAndTheImageBytes) {
  std::string dir = test::scratch_dir("score-cache-digest");
  test::write_file(dir + "/a.jpg", "image bytes one");
  Sample s;
  s.key = "0123456789abcdef0123456789abcdef";
  s.image = "a.jpg";
  SampleDigest d1, d2, d3, text_only;
  ASSERT_TRUE(sample_digest(s, dir, &d1));
  ASSERT_TRUE(sample_digest(s, dir, &d2));
  EXPECT_EQ(d1, d2);
  test::write_file(dir + "/a.jpg", "image bytes two");  // same path, same size, other content
  ASSERT_TRUE(sample_digest(s, dir, &d3));
  EXPECT_NE(d1, d3);
  ASSERT_TRUE(sample_digest(s, "", &text_only));  // no image root: the key alone
  EXPECT_NE(text_only, d3);
  s.key[0] = '1';
  SampleDigest d4;
  ASSERT_TRUE(sample_digest(s, dir, &d4));
  EXPECT_NE(d4, d3);
  s.image = "missing.jpg";
  EXPECT_FALSE(sample_digest(s, dir, &d4));
}

TEST(ModelFingerprint, SeesEveryChangeOfSmallFilesAndSampledBlocksOfLargeOnes) {
  std::string dir = test::scratch_dir("model-fingerprint");
  test::write_file(dir + "/config.json", "{}");
  std::string weights(70u << 20, '\0');  // above the whole-file bound: sampled
  test::write_file(dir + "/model.safetensors", weights);
  const std::string base = model_folder_fingerprint(dir);
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(model_folder_fingerprint(dir), base);
  test::write_file(dir + "/config.json", "{ }");
  const std::string config_changed = model_folder_fingerprint(dir);
  EXPECT_NE(config_changed, base);
  // Retraining changes every block; a change in the header is always seen.
  for (std::size_t i = 0; i < weights.size(); i += 4096) weights[i + 100] = 1;
  test::write_file(dir + "/model.safetensors", weights);
  const std::string retrained = model_folder_fingerprint(dir);
  EXPECT_NE(retrained, config_changed);
  weights[10] = 7;
  test::write_file(dir + "/model.safetensors", weights);
  EXPECT_NE(model_folder_fingerprint(dir), retrained);
}

}  // namespace
}  // namespace align2
