// align2 curate end to end with tiny reward models on real LLaVA records and real photos:
// 1 rank and 3 ranks (mpirun) give byte-identical curated.json and summary.json (timings aside).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "core/shard_store.h"
#include "test/model_fixture.h"
#include "test/pipeline_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write_rm(const std::string& dir, const std::string& kind, std::uint32_t seed) {
  fs::create_directories(dir);
  test::write_file(dir + "/reward_config.json", json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", kind},
                                                     {"base_model", "../base"}}.dump());
  at::manual_seed(seed);
  at::Tensor w = at::randn({1, 32});
  write_safetensors(dir + "/score_head.safetensors",
                    {float_tensor("score.weight", {1, 32}, std::vector<float>(w.data_ptr<float>(), w.data_ptr<float>() + 32))});
}

TEST(CurateCli, OneAndThreeRanksGiveTheSameOutputs) {
  std::string root = test::scratch_dir("curate");
  test::write_tiny_model(root + "/base", test::TinyLayout::llava_liuhaotian, {},
                         test::shared_path("models/stories260K-hf/tokenizer.model"));
  write_rm(root + "/qrm", "question", 1);
  write_rm(root + "/arm", "answer", 2);
  // 24 real records; their COCO images are not here, so each name gets a copy of a real photo
  // (a symlink would leave the image root and be refused).
  json records = json::parse(test::read_file(test::shared_path("data/llava/llava_instruct_60.json")));
  json pool = json::array();
  std::vector<std::string> photos;
  for (const auto& e : fs::directory_iterator(test::shared_path("data/images/rlaifv")))
    if (e.path().extension() == ".jpg") photos.push_back(e.path().string());
  std::sort(photos.begin(), photos.end());
  fs::create_directories(root + "/images");
  for (int i = 0; i < 24; ++i) {
    pool.push_back(records[std::size_t(i)]);
    fs::copy_file(photos[std::size_t(i) % photos.size()], root + "/images/" + records[std::size_t(i)]["image"].get<std::string>());
  }
  test::write_file(root + "/pool.json", pool.dump(1));
  test::write_file(root + "/job.json", json{{"pools", {"pool.json"}}, {"subsets", {{"pool.json", "conversation"}}},
                                            {"image_root", "images"}, {"question_model", "qrm"}, {"answer_model", "arm"},
                                            {"alpha", 0.5}, {"beta", 0.5}, {"threads", 1}}.dump(2));
  std::string bin = test::align2_bin();
  auto one = test::run_command(bin + " curate --config " + root + "/job.json --set output_dir=" + root + "/np1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto three = test::run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 3 --oversubscribe " +
                                 bin + " curate --config " + root + "/job.json --set output_dir=" + root + "/np3 --set batch_size=3");
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_EQ(test::read_file(root + "/np1/curated.json"), test::read_file(root + "/np3/curated.json"));
  EXPECT_EQ(test::summary_without_timings(root + "/np1/summary.json"),
            test::summary_without_timings(root + "/np3/summary.json"));
  json summary = json::parse(test::read_file(root + "/np3/summary.json"));
  EXPECT_EQ(summary["input_records"], 24);
  EXPECT_EQ(summary["kept"], 6);  // floor(0.5 * floor(0.5 * 24))
  EXPECT_EQ(summary["timings"]["select_questions"]["ranks"], 3);
  ShardData scores = read_shard(root + "/np3/scores.h5");
  ASSERT_EQ(scores.rows.size(), 24u);
  for (const ShardRow& r : scores.rows) {
    EXPECT_EQ(r.status, "valid");
    EXPECT_TRUE(std::isfinite(r.question_score));
  }
  // A config without reward models is refused with the reason.
  auto bad = test::run_command(bin + " curate --config " + root + "/job.json --set question_model=");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("question_model and answer_model"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace align2
