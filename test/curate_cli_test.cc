// align2 curate end to end with tiny reward models on real LLaVA records and real photos:
// 1 rank and 3 ranks (mpirun) give byte-identical curated.json and summary.json (timings aside).
#include <gtest/gtest.h>


#include <cmath>
#include <algorithm>
#include <chrono>
#include <thread>
#include <signal.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/store/shard_store.h"
#include "test/model_fixture.h"
#include "test/pipeline_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// root/job.json over `records` real records, alpha and beta as given (test/model_fixture.h).
void write_job(const std::string& root, int records, double alpha, double beta) {
  test::write_curate_job(root, records, {{"alpha", alpha}, {"beta", beta}});
}

const std::string kMpirun = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 3 --oversubscribe ";

TEST(CurateCli, OneAndThreeRanksGiveTheSameOutputs) {
  std::string root = test::scratch_dir("curate");
  write_job(root, 24, 0.5, 0.5);
  std::string bin = test::align2_bin();
  auto one = test::run_command(bin + " curate --config " + root + "/job.json --set output_dir=" + root + "/np1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto three = test::run_command(kMpirun + bin + " curate --config " + root + "/job.json --set output_dir=" + root + "/np3 --set batch_size=3");
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_EQ(test::read_file(root + "/np1/curated.json"), test::read_file(root + "/np3/curated.json"));
  EXPECT_EQ(test::summary_without_timings(root + "/np1/summary.json"),
            test::summary_without_timings(root + "/np3/summary.json"));
  json summary = json::parse(test::read_file(root + "/np3/summary.json"));
  EXPECT_EQ(summary["input_records"], 24);
  EXPECT_EQ(summary["kept"], 6);  // floor(0.5 * floor(0.5 * 24))
  EXPECT_EQ(summary["timings"]["select_questions"]["ranks"], 3);
  // Stage 3 ran with the base LLaVA (the question model's): every curated sample attempted.
  EXPECT_EQ(summary["stages"]["rewrite"]["attempted"], 6);
  EXPECT_EQ(summary["timings"]["rewrite"]["ranks"], 3);
  ShardData scores = read_shard(root + "/np3/scores.h5");
  ASSERT_EQ(scores.rows.size(), 24u);
  for (const ShardRow& r : scores.rows) {
    EXPECT_EQ(r.status, Status::valid);
    EXPECT_TRUE(std::isfinite(r.question_score));
  }
  // A config without reward models is refused with the reason.
  auto bad = test::run_command(bin + " curate --config " + root + "/job.json --set question_model=");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("question_model and answer_model"), std::string::npos) << bad.err;
}

// align2 rewrite on real records and photos with the tiny LLaVA (the question model's base):
// every valid record rewritten and reviewed, in pool order; 1 rank and 2 ranks identical.
TEST(RewriteCli, OneAndTwoRanksGiveTheSameOutputs) {
  std::string root = test::scratch_dir("rewrite-cli");
  write_job(root, 5, 0.5, 0.5);
  json first = json::parse(test::read_file(root + "/pool.json"))[0];
  test::write_file(root + "/more.jsonl", first.dump() + "\n{\"id\": \"no-turns\", \"conversations\": []}\n");
  std::string bin = test::align2_bin();
  std::string command = bin + " rewrite --config " + root + "/job.json --input " + root + "/pool.json --input " + root +
                        "/more.jsonl --set rewrite_max_new_tokens=48 --set rewrite_batch=2 --output-dir ";
  auto one = test::run_command(command + root + "/np1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.out.find(root + "/np1/curated.json"), std::string::npos) << one.out;
  auto two = test::run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 " + command +
                               root + "/np2 --set batch_size=3");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(test::read_file(root + "/np1/curated.json"), test::read_file(root + "/np2/curated.json"));
  EXPECT_EQ(test::summary_without_timings(root + "/np1/summary.json"),
            test::summary_without_timings(root + "/np2/summary.json"));
  json summary = json::parse(test::read_file(root + "/np2/summary.json"));
  EXPECT_EQ(summary["input_records"], 7);
  EXPECT_EQ(summary["kept"], 5);
  EXPECT_EQ(summary["stages"]["rewrite"]["attempted"], 5);
  EXPECT_EQ(summary["timings"]["rewrite"]["ranks"], 2);
  ShardData scores = read_shard(root + "/np2/scores.h5");
  ASSERT_EQ(scores.rows.size(), 7u);
  EXPECT_EQ(scores.rows[5].status, Status::duplicate);
  EXPECT_EQ(scores.rows[6].status, Status::invalid);
  json curated = json::parse(test::read_file(root + "/np2/curated.json"));
  ASSERT_EQ(curated.size(), 5u);
  for (std::size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(curated[k]["id"], scores.rows[k].id);  // pool order
    EXPECT_EQ(scores.rows[k].global_rank, std::int64_t(k));
    EXPECT_FALSE(scores.rows[k].rewrite_replies.empty());
  }
  EXPECT_TRUE(fs::exists(root + "/np2/report.html"));

  // Without a model to rewrite with: refused, naming the key. --help explains the command.
  auto bad = test::run_command(command + root + "/bad --set question_model=");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("rewrite_model"), std::string::npos) << bad.err;
  auto help = test::run_command(bin + " rewrite --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--output-dir"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("rewrite_model"), std::string::npos) << help.out;
}

// kill -9 of one rank while stage 2 runs; the same command again resumes from the
// committed chunks and ends with the outputs of an uninterrupted run.
TEST(CurateCli, KilledRankResumesToTheSameOutputs) {
  std::string root = test::scratch_dir("curate-kill");
  write_job(root, 60, 0.9, 0.5);  // 54 survivors: stage 2 is long enough to be caught
  std::string bin = test::align2_bin();
  auto ref = test::run_command(bin + " curate --config " + root + "/job.json --set output_dir=" + root + "/ref");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;

  const std::string out = root + "/killed";
  const std::string command = kMpirun + bin + " curate --config " + root + "/job.json --set output_dir=" + out +
                              " --set chunk_records=1 --set batch_size=2";
  auto started = test::run_command("(" + command + " > " + root + "/killed.log 2>&1 & echo $!)");
  ASSERT_EQ(started.exit_code, 0);
  const pid_t mpirun = pid_t(std::stol(started.out));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (test::chunks_in(out + "/work/select_answers") == 0 && kill(mpirun, 0) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::vector<pid_t> ranks = test::ranks_running("output_dir=" + out);
  ASSERT_EQ(ranks.size(), 3u) << test::read_file(root + "/killed.log");
  for (pid_t p : ranks) kill(p, SIGSTOP);  // freeze the job: the kill lands mid-stage
  std::size_t committed = test::chunks_in(out + "/work/select_answers");
  std::printf("stage-2 chunks committed when the job froze: %zu of 54\n", committed);
  EXPECT_GT(committed, 0u);
  EXPECT_LT(committed, 54u);
  test::kill_frozen_rank(ranks[1], ranks, "output_dir=" + out, [&] { return kill(mpirun, 0) == 0; });
  while (kill(mpirun, 0) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // (mpirun continues the surviving ranks while it takes the job down; they may commit more.)
  EXPECT_GE(test::chunks_in(out + "/work/select_answers"), committed);
  ASSERT_FALSE(fs::exists(out + "/summary.json"));

  auto rerun = test::run_command(command);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_EQ(test::read_file(out + "/curated.json"), test::read_file(root + "/ref/curated.json"));
  EXPECT_EQ(test::summary_without_timings(out + "/summary.json"),
            test::summary_without_timings(root + "/ref/summary.json"));
  json timings = json::parse(test::read_file(out + "/summary.json"))["timings"];
  std::uint64_t resumed1 = 0, resumed2 = 0;
  for (const json& r : timings["select_questions"]["per_rank"]) resumed1 += r["resumed"].get<std::uint64_t>();
  for (const json& r : timings["select_answers"]["per_rank"]) resumed2 += r["resumed"].get<std::uint64_t>();
  EXPECT_EQ(resumed1, 60u);
  EXPECT_GE(resumed2, committed);  // chunk_records 1: one item per committed chunk

  // The same folder with another config is refused, naming --force.
  auto other = test::run_command(command + " --set beta=0.4");
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("--force"), std::string::npos) << other.err;
}

}  // namespace
}  // namespace align2
