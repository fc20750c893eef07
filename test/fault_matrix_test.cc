// The fault matrix (docs/reliability.md): the real align2 binary on tiny reward models
// (test/model_fixture.h) killed, stopped, starved of disk space and fed damaged state and
// input; every case ends with outputs compared to an uninterrupted run (curated.json byte for
// byte, summary.json without its timings, scores.h5 row by row in every column).
//
// The "random" moments are drawn from a seed printed at the start (ALIGN2_FAULT_SEED=N
// repeats a run's choices).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/pipeline/merge.h"
#include "core/store/shard_store.h"
#include "test/model_fixture.h"
#include "test/pipeline_fixture.h"
#include "test/test_support.h"
#include "core/store/output_layout.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::uint32_t fault_seed() {
  static const std::uint32_t seed = [] {
    const char* env = std::getenv("ALIGN2_FAULT_SEED");
    std::uint32_t s = env ? std::uint32_t(std::stoul(env)) : std::random_device{}();
    std::printf("fault matrix seed: %u (ALIGN2_FAULT_SEED=%u repeats this run's choices)\n", s, s);
    std::fflush(stdout);
    return s;
  }();
  return seed;
}

// A command run in the background through /bin/sh with stdout and stderr to `log`; its exit
// status is collected with waitpid (no reliance on an init process reaping it).
class Background {
 public:
  Background(const std::string& command, const std::string& log) : log_(log) {
    pid_ = fork();
    if (pid_ == 0) {
      std::string full = "exec " + command + " >" + log + " 2>&1";
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (running()) {
      kill(pid_, SIGKILL);
      wait(30);
    }
  }
  bool running() {
    if (done_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      done_ = true;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return !done_;
  }
  // The exit code; -1 (and the process killed) when it is still running after `seconds`.
  int wait(int seconds) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      done_ = true;
      return -1;
    }
    return code_;
  }
  pid_t pid() const { return pid_; }
  std::string log() const { return test::read_file(log_); }

 private:
  pid_t pid_ = -1;
  std::string log_;
  bool done_ = false;
  int code_ = -1;
};

// Polls `ready` every millisecond until it holds (true) or `job` ends or 300 s pass (false).
template <class Ready>
bool wait_for(Background& job, Ready ready) {
  auto deadline = Clock::now() + std::chrono::seconds(300);
  while (!ready()) {
    if (!job.running() || Clock::now() > deadline) return ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The MPI rank of a running align2 process (OMPI_COMM_WORLD_RANK in its environment); -1 if unknown.
int rank_of(pid_t pid) {
  std::string env;
  try {
    env = test::read_file("/proc/" + std::to_string(pid) + "/environ");
  } catch (const std::exception&) {
    return -1;
  }
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  for (std::size_t at = 0; at < env.size();) {
    std::size_t end = env.find('\0', at);
    if (end == std::string::npos) end = env.size();
    if (env.compare(at, key.size(), key) == 0) return std::stoi(env.substr(at + key.size(), end - at - key.size()));
    at = end + 1;
  }
  return -1;
}

// Every column of a row, floats in hex (NaN as "nan"), as one comparable line.
std::string row_text(const ShardRow& r) {
  std::ostringstream s;
  s << std::hexfloat;
  s << r.index << '|' << r.key << '|' << r.id << '|' << r.subset << '|' << status_name(r.status) << '|' << reason_name(r.reason) << '|'
    << r.message << '|' << r.image << '|' << r.record << '|' << r.question_score << '|' << r.answer_score << '|'
    << int(r.selected_questions) << int(r.selected_answers) << int(r.kept) << int(r.truncated) << '|'
    << r.global_rank;
  for (float v : r.answer_scores) s << ",a" << v;
  for (std::size_t t = 0; t < r.rewrite_kept.size(); ++t)
    s << "|turn " << t << ':' << r.rewritten_questions[t] << '/' << r.rewritten_answers[t] << '/' << r.rewrite_replies[t]
      << '/' << r.rewrite_reasons[t] << '/' << int(r.rewrite_kept[t]) << '/' << r.review_p[t] << '/'
      << r.review_p_order1[t] << '/' << r.review_p_order2[t];
  return s.str();
}

// scores.h5 of two runs: the same file facts and rows (its stage_summary_json is summary.json,
// timings included: the callers compare that file without them).
void expect_same_scores(const std::string& a_path, const std::string& b_path) {
  ShardData a = read_shard(a_path), b = read_shard(b_path);
  EXPECT_EQ(a.meta.config_fingerprint, b.meta.config_fingerprint);
  EXPECT_EQ(a.meta.input_fingerprint, b.meta.input_fingerprint);
  EXPECT_EQ(a.meta.stage, b.meta.stage);
  EXPECT_EQ(a.meta.input_records, b.meta.input_records);
  ASSERT_EQ(a.rows.size(), b.rows.size()) << a_path;
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.rows.size(); ++i)
    if (row_text(a.rows[i]) != row_text(b.rows[i]) && differ++ < 3)
      ADD_FAILURE() << "scores.h5 row " << i << " differs:\n" << row_text(a.rows[i]) << "\n" << row_text(b.rows[i]);
  EXPECT_EQ(differ, 0u) << a_path << " vs " << b_path;
}

// Files named "*.tmp-*" under `dir` (a killed or failed writer's leftovers).
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->path().filename().string().find(".tmp-") != std::string::npos) out.push_back(it->path().string());
  return out;
}

// The outputs of `out` are those of the uninterrupted run `ref`, whole, with no temporaries left.
void expect_same_outputs(const std::string& out, const std::string& ref) {
  EXPECT_EQ(test::read_file(out + "/curated.json"), test::read_file(ref + "/curated.json"));
  EXPECT_EQ(test::summary_without_timings(out + "/summary.json"), test::summary_without_timings(ref + "/summary.json"));
  expect_same_scores(out + "/scores.h5", ref + "/scores.h5");
  EXPECT_TRUE(fs::exists(out + "/report.html"));
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
}

std::uint64_t resumed_items(const std::string& summary_path, const std::string& stage) {
  const json summary = json::parse(test::read_file(summary_path));
  return summary["timings"][stage]["resumed"].get<std::uint64_t>();
}

const std::vector<std::string>& stages() {
  static const std::vector<std::string> s = {"select_questions", "select_answers", "rewrite"};
  return s;
}

void flip_bytes(const std::string& path, std::uint64_t offset, std::size_t count) {
  std::string bytes = test::read_file(path);
  for (std::size_t k = 0; k < count && offset + k < bytes.size(); ++k) bytes[offset + k] = char(~bytes[offset + k]);
  test::write_file(path, bytes);
}

// One curation job shared by the tests (40 real records on real photos, the tiny reward
// models, stage 3 with the tiny LLaVA, one item per chunk so that every stage has many
// chunks to be caught between) and its uninterrupted run under mpirun -np 2.
class FaultMatrix : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fault_seed();
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    root_ = new std::string(test::scratch_dir("fault-matrix"));
    test::write_curate_job(*root_, 40, {{"alpha", 0.75}, {"beta", 0.5}, {"chunk_records", 1}, {"batch_size", 2},
                                        {"rewrite_batch", 2}, {"rewrite_max_new_tokens", 16}});
    auto t0 = Clock::now();
    reference_ = new test::CommandResult(test::run_command(curate(ref(), 2)));
    std::printf("uninterrupted run (np 2): %.1f s\n", std::chrono::duration<double>(Clock::now() - t0).count());
  }
  static void TearDownTestSuite() {
    if (std::getenv("ALIGN2_FAULT_KEEP")) std::printf("kept %s (ALIGN2_FAULT_KEEP)\n", root_->c_str());
    else fs::remove_all(*root_);
    delete root_;
    delete reference_;
  }
  void SetUp() override { ASSERT_EQ(reference_->exit_code, 0) << reference_->err; }

  static std::string root() { return *root_; }
  static std::string ref() { return *root_ + "/ref"; }
  // align2 curate of the shared job into `out`, on `ranks` ranks (1: no mpirun).
  static std::string curate(const std::string& out, int ranks, const std::string& job = "") {
    std::string launcher = ranks == 1 ? "" : "mpirun -np " + std::to_string(ranks) + " --oversubscribe --bind-to none ";
    return launcher + test::align2_bin() + " curate --config " + (job.empty() ? *root_ + "/job.json" : job) +
           " --set output_dir=" + out;
  }

 private:
  static std::string* root_;
  static test::CommandResult* reference_;
};

std::string* FaultMatrix::root_ = nullptr;
test::CommandResult* FaultMatrix::reference_ = nullptr;

// kill -9 of one rank (drawn) at a drawn moment of each stage in turn (after k committed
// chunks of that stage, k drawn), each time rerunning the same command; the last rerun ends
// with the outputs of the uninterrupted run, having resumed every committed chunk.
TEST_F(FaultMatrix, KillOfOneRankInEachStageThenRerun) {
  std::mt19937 rng(fault_seed() + 1);
  const std::string out = root() + "/killed", command = curate(out, 2);
  for (const std::string& stage : stages()) {
    const std::size_t total = test::chunks_in(ref() + "/work/" + stage);
    ASSERT_GE(total, 4u) << stage;
    const std::size_t k = 1 + rng() % (total * 2 / 3);
    const int victim_rank = int(rng() % 2);
    std::printf("%s: kill -9 of rank %d once %zu of its %zu chunks are committed\n", stage.c_str(), victim_rank, k,
                total);
    Background job(command, out + "-" + stage + ".log");
    const std::string work = out + "/work/" + stage;
    ASSERT_TRUE(wait_for(job, [&] { return test::chunks_in(work) >= k; })) << job.log();
    std::vector<pid_t> ranks = test::ranks_running("output_dir=" + out);
    ASSERT_EQ(ranks.size(), 2u) << job.log();
    for (pid_t p : ranks) kill(p, SIGSTOP);  // freeze the job: the kill lands mid-stage
    const std::size_t committed = test::chunks_in(work);
    pid_t victim = rank_of(ranks[0]) == victim_rank ? ranks[0] : ranks[1];
    EXPECT_EQ(rank_of(victim), victim_rank);
    test::kill_frozen_rank(victim, ranks, "output_dir=" + out, [&] { return job.running(); });
    EXPECT_NE(job.wait(120), 0) << job.log();
    std::printf("  %zu of %zu chunks committed when the job froze, %zu after it ended\n", committed, total,
                test::chunks_in(work));
    EXPECT_LT(committed, total) << stage;
    for (const char* f : {"curated.json", "scores.h5", "summary.json"}) EXPECT_FALSE(fs::exists(out + "/" + f)) << f;
  }
  auto rerun = test::run_command(command);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  expect_same_outputs(out, ref());
  // The last run resumed stages 1 and 2 whole (the earlier attempts finished them).
  const std::uint64_t items1 = json::parse(test::read_file(ref() + "/summary.json"))["input_records"];
  EXPECT_EQ(resumed_items(out + "/summary.json", "select_questions"), items1);
  EXPECT_GT(resumed_items(out + "/summary.json", "select_answers"), 0u);
  EXPECT_GT(resumed_items(out + "/summary.json", "rewrite"), 0u);
}

// SIGTERM to every rank (what Slurm sends at preemption) at a drawn moment of a drawn stage:
// each rank stops at its next chunk boundary, the job ends nonzero saying it was stopped, and
// the rerun ends with the outputs of the uninterrupted run.
TEST_F(FaultMatrix, SigtermToAllRanksThenRerun) {
  std::mt19937 rng(fault_seed() + 2);
  const std::string out = root() + "/sigterm", command = curate(out, 2);
  const std::string stage = stages()[rng() % stages().size()];
  const std::size_t total = test::chunks_in(ref() + "/work/" + stage);
  const std::size_t k = 1 + rng() % (total / 2);
  std::printf("SIGTERM to both ranks once %zu of the %zu chunks of %s are committed\n", k, total, stage.c_str());
  Background job(command, out + ".log");
  const std::string work = out + "/work/" + stage;
  ASSERT_TRUE(wait_for(job, [&] { return test::chunks_in(work) >= k; })) << job.log();
  std::vector<pid_t> ranks = test::ranks_running("output_dir=" + out);
  ASSERT_EQ(ranks.size(), 2u) << job.log();
  for (pid_t p : ranks) kill(p, SIGTERM);
  const int code = job.wait(120);
  const std::string log = job.log();
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "the stopped job did not end: " << log;
  EXPECT_NE(log.find("stopped by signal 15 in stage " + stage), std::string::npos) << log;
  EXPECT_NE(log.find("rerun the same command to resume"), std::string::npos) << log;
  std::printf("  %zu of %zu chunks committed when the job ended\n", test::chunks_in(work), total);
  EXPECT_LT(test::chunks_in(work), total);
  EXPECT_FALSE(fs::exists(out + "/summary.json"));
  auto rerun = test::run_command(command);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  expect_same_outputs(out, ref());
  EXPECT_GT(resumed_items(out + "/summary.json", stage), 0u);
}

// Damage between runs: a committed chunk of each stage truncated, overwritten with bytes
// flipped, or replaced by another chunk's file; a stage shard truncated. `align2 merge` refuses
// the damaged shard naming it; the curate rerun names every damaged chunk, scores it again,
// never merges the damaged files, and ends with the outputs of the uninterrupted run.
TEST_F(FaultMatrix, DamagedChunksAndShardsAreRecomputedNeverMerged) {
  std::mt19937 rng(fault_seed() + 3);
  const std::string out = root() + "/damaged";
  fs::copy(ref(), out, fs::copy_options::recursive);
  auto pick = [&](const std::string& stage) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(out + "/work/" + stage))
      if (e.path().extension() == ".h5") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    return files.at(rng() % files.size());
  };
  const std::string truncated = pick("select_questions");
  const std::uint64_t cut = rng() % fs::file_size(truncated);
  fs::resize_file(truncated, cut);
  const std::string flipped = pick("select_answers");
  const std::uint64_t at = 512 + rng() % (fs::file_size(flipped) - 512);
  flip_bytes(flipped, at, 64);
  std::string swapped = pick("rewrite"), source = pick("rewrite");
  while (source == swapped) source = pick("rewrite");
  fs::copy_file(source, swapped, fs::copy_options::overwrite_existing);
  const std::string shard = shard_path(out, "select_answers", 1);
  fs::resize_file(shard, fs::file_size(shard) / 2);
  std::printf("truncated %s to %llu bytes; flipped 64 bytes of %s at %llu; %s replaced by %s\n", truncated.c_str(),
              (unsigned long long)cut, flipped.c_str(), (unsigned long long)at, swapped.c_str(), source.c_str());

  const std::string before = test::read_file(out + "/curated.json");
  auto merge = test::run_command(test::align2_bin() + " merge --output-dir " + out);
  EXPECT_EQ(merge.exit_code, 1) << merge.err;
  EXPECT_NE(merge.err.find(shard), std::string::npos) << merge.err;
  EXPECT_EQ(test::read_file(out + "/curated.json"), before);  // a refused merge leaves the outputs alone
  for (const char* f : {"curated.json", "scores.h5", "summary.json", "report.html"}) fs::remove(out + "/" + f);

  auto rerun = test::run_command(curate(out, 2));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  for (const std::string& damaged : {truncated, swapped})
    EXPECT_NE(rerun.err.find(damaged), std::string::npos) << damaged << " not named:\n" << rerun.err;
  EXPECT_NE(rerun.err.find("scoring it again"), std::string::npos) << rerun.err;
  expect_same_outputs(out, ref());
  // Whatever the flipped bytes hit, the chunk now holds the rows of the uninterrupted run.
  ShardData a = read_shard(flipped, ShardReadOptions{false});
  ShardData b = read_shard(ref() + "/work/select_answers/" + fs::path(flipped).filename().string(), ShardReadOptions{false});
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (std::size_t i = 0; i < a.rows.size(); ++i) EXPECT_EQ(row_text(a.rows[i]), row_text(b.rows[i]));
}

// The first file in `dir` (not below it) whose name starts with `prefix`; "" if none.
std::string file_starting(const std::string& dir, const std::string& prefix) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().filename().string().rfind(prefix, 0) == 0) return it->path().string();
  return "";
}

// Adds a JSONL pool file to the job at `root` (job.json of test::write_curate_job).
void add_pool(const std::string& root, const std::string& name, const std::string& content) {
  test::write_file(root + "/" + name, content);
  json job = json::parse(test::read_file(root + "/job.json"));
  job["pools"].push_back(name);
  test::write_file(root + "/job.json", job.dump(2));
}

// kill -9 of the merging rank (rank 0) at a drawn point of the merge (a pool of 40,000 invalid
// records makes writing scores.h5, and the report's reading of it, long enough to be caught):
// nothing partial is ever at a final name (files are renamed into place whole), and the rerun
// ends with the outputs of the uninterrupted run and no temporary left behind.
TEST_F(FaultMatrix, KillOfTheMergingRankThenRerun) {
  std::mt19937 rng(fault_seed() + 4);
  const std::string job = root() + "/merge-job";
  test::write_curate_job(job, 8, {{"rewrite", false}});
  std::string filler;
  for (int i = 0; i < 40000; ++i)
    filler += "{\"id\": \"f" + std::to_string(i) + "\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"" +
              std::to_string(i) + "\"}]}\n";
  add_pool(job, "filler.jsonl", filler);
  const std::string ref_out = job + "/ref", out = job + "/killed";
  auto t0 = Clock::now();
  auto reference = test::run_command(curate(ref_out, 2, job + "/job.json"));
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  std::printf("uninterrupted run of the 40,008-record pool: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t0).count());

  // Drawn: while scores.h5 is being written, or once it is in place (curated.json, summary.json
  // and report.html follow; the report alone streams scores.h5 twice).
  const bool writing_scores = rng() % 2 == 0;
  std::printf("kill -9 of rank 0 %s\n", writing_scores ? "while it writes scores.h5" : "once scores.h5 is in place");
  Background run(curate(out, 2, job + "/job.json"), out + ".log");
  std::string tmp;
  ASSERT_TRUE(wait_for(run, [&] {
    return writing_scores ? !(tmp = file_starting(out, "scores.h5.tmp-")).empty() : fs::exists(out + "/scores.h5");
  })) << run.log();
  std::vector<pid_t> ranks = test::ranks_running("output_dir=" + out);
  ASSERT_EQ(ranks.size(), 2u) << run.log();
  for (pid_t p : ranks) kill(p, SIGSTOP);
  pid_t merging = rank_of(ranks[0]) == 0 ? ranks[0] : ranks[1];
  ASSERT_EQ(rank_of(merging), 0);
  if (writing_scores) {
    EXPECT_NE(tmp.find(".tmp-" + std::to_string(merging)), std::string::npos) << tmp;  // rank 0's
  }
  test::kill_frozen_rank(merging, ranks, "output_dir=" + out, [&] { return run.running(); });
  EXPECT_NE(run.wait(120), 0) << run.log();
  EXPECT_FALSE(fs::exists(out + "/report.html"));  // the last of the merge's files
  if (writing_scores) {
    for (const char* f : {"scores.h5", "curated.json", "summary.json"}) EXPECT_FALSE(fs::exists(out + "/" + f)) << f;
  } else {  // whatever is at a final name is whole
    expect_same_scores(out + "/scores.h5", ref_out + "/scores.h5");
    if (fs::exists(out + "/curated.json")) {
      EXPECT_EQ(test::read_file(out + "/curated.json"), test::read_file(ref_out + "/curated.json"));
    }
    if (fs::exists(out + "/summary.json")) {
      EXPECT_EQ(test::summary_without_timings(out + "/summary.json"),
                test::summary_without_timings(ref_out + "/summary.json"));
    }
  }
  auto rerun = test::run_command(curate(out, 2, job + "/job.json"));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  expect_same_outputs(out, ref_out);
  fs::remove_all(job);
}

// Bytes free on the file system holding `path`.
std::uint64_t free_bytes(const std::string& path) {
  struct statvfs s = {};
  if (statvfs(path.c_str(), &s) != 0) return 0;
  return std::uint64_t(s.f_bavail) * s.f_frsize;
}

// Bytes `dir` takes on a file system of 4 KiB pages.
std::uint64_t pages_of(const std::string& dir) {
  std::uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += (e.file_size() + 4095) / 4096 * 4096;
  return n;
}

// Fills the file system of `dir` with `dir`/filler until `leave` bytes are free.
void fill_leaving(const std::string& dir, std::uint64_t leave) {
  std::uint64_t have = free_bytes(dir);
  std::FILE* f = std::fopen((dir + "/filler").c_str(), "ab");
  ASSERT_NE(f, nullptr);
  const std::string block(4096, 'x');
  for (std::uint64_t n = have > leave ? (have - leave) / 4096 : 0; n > 0; --n)
    if (std::fwrite(block.data(), 1, block.size(), f) != block.size()) break;
  std::fclose(f);
}

// The output folder on a small tmpfs: a run that fills it stops with an error naming the file
// it could not write, the chunks committed before stay whole, and the rerun after space is freed
// completes with the outputs of the uninterrupted run; the file system full again while an
// existing run is merged anew: the error, and the earlier outputs untouched. Where mounting is
// not allowed, the same through RLIMIT_FSIZE (writes past the limit fail with EFBIG).
TEST_F(FaultMatrix, FullFileSystemFailsClearlyKeepsEarlierWorkAndTheRerunCompletes) {
  std::mt19937 rng(fault_seed() + 5);
  const std::string disk = root() + "/disk", out = disk + "/out";
  fs::create_directories(disk);
  const std::uint64_t work = pages_of(ref() + "/work");
  const std::uint64_t size = (work / 4 + rng() % (work / 2)) / 4096 * 4096;
  if (std::getenv("ALIGN2_FAULT_NO_MOUNT") ||  // (to test the fallback where mounting works)
      mount("tmpfs", disk.c_str(), "tmpfs", 0, ("size=" + std::to_string(size)).c_str()) != 0) {
    std::printf("no tmpfs (%s): RLIMIT_FSIZE instead\n", std::getenv("ALIGN2_FAULT_NO_MOUNT") ? "ALIGN2_FAULT_NO_MOUNT" : std::strerror(errno));
    const std::uint64_t limit = 64 * 1024 + rng() % (64 * 1024);  // above any chunk, below the stage shard
    auto full = test::run_command("trap '' XFSZ; exec prlimit --fsize=" + std::to_string(limit) + " " + curate(out, 1));
    EXPECT_EQ(full.exit_code, 1) << full.err;
    EXPECT_NE(full.err.find(out + "/"), std::string::npos) << full.err;
    EXPECT_GT(test::chunks_in(out + "/work/select_questions"), 0u);
    EXPECT_FALSE(fs::exists(out + "/curated.json"));
    auto rerun = test::run_command(curate(out, 1));
    ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
    expect_same_outputs(out, ref());
    EXPECT_GT(resumed_items(out + "/summary.json", "select_questions"), 0u);
    return;
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
  } unmount{disk};
  std::printf("a %llu-byte tmpfs for a run whose chunks take %llu bytes\n", (unsigned long long)size,
              (unsigned long long)work);

  auto full = test::run_command(curate(out, 1));
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_NE(full.err.find(out + "/"), std::string::npos) << "the error names no file:\n" << full.err;
  EXPECT_TRUE(full.err.find("No space left") != std::string::npos || full.err.find("disk full") != std::string::npos)
      << full.err;
  std::printf("  the full disk's error: %s", full.err.substr(full.err.rfind("align2 curate")).c_str());
  const std::size_t committed = test::chunks_in(out + "/work/select_questions");
  EXPECT_GT(committed, 0u);
  for (const auto& e : fs::recursive_directory_iterator(out + "/work")) {  // what was committed is whole
    if (e.path().extension() == ".h5") {
      EXPECT_NO_THROW(read_shard(e.path().string())) << e.path();
    }
  }
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(out + "/curated.json"));

  ASSERT_EQ(mount("tmpfs", disk.c_str(), "tmpfs", MS_REMOUNT, "size=64m"), 0) << std::strerror(errno);
  auto rerun = test::run_command(curate(out, 1));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  expect_same_outputs(out, ref());
  EXPECT_GE(resumed_items(out + "/summary.json", "select_questions"), committed);

  // Full again while the finished run is rerun (its shards rebuilt, its outputs written anew):
  // beyond the space of the old shards (removed, then written again) there is room for run.json
  // and a drawn part of scores.h5.
  const std::string curated = test::read_file(out + "/curated.json"), summary = test::read_file(out + "/summary.json");
  const std::uint64_t scores = fs::file_size(out + "/scores.h5");
  fill_leaving(disk, 8192 + rng() % (scores / 2));
  auto again = test::run_command(curate(out, 1));
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_NE(again.err.find(out + "/"), std::string::npos) << again.err;
  EXPECT_EQ(test::read_file(out + "/curated.json"), curated);
  EXPECT_EQ(test::read_file(out + "/summary.json"), summary);
  expect_same_scores(out + "/scores.h5", ref() + "/scores.h5");
  EXPECT_EQ(temporaries(out), std::vector<std::string>{});
  fs::remove(disk + "/filler");
  auto freed = test::run_command(curate(out, 1));
  ASSERT_EQ(freed.exit_code, 0) << freed.err;
  expect_same_outputs(out, ref());
}

// Copies the shared job's own files (models, pool, images, job.json) to `to`.
void copy_job(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const char* name : {"base", "qrm", "arm", "images", "pool.json", "job.json"})
    fs::copy(from + "/" + name, to + "/" + name, fs::copy_options::recursive);
}

// A run stopped between stages (SIGTERM once stage 2 has begun); the answer model's weights
// then changed in place (same size): the rerun is refused naming the fingerprint, touching
// nothing; with the weights back the run resumes and ends as the uninterrupted run.
TEST_F(FaultMatrix, ACheckpointChangedBetweenStagesIsRefused) {
  const std::string job = root() + "/checkpoint", out = job + "/out";
  copy_job(root(), job);
  const std::string command = curate(out, 1, job + "/job.json");
  {
    Background run(command, job + "/stopped.log");
    ASSERT_TRUE(wait_for(run, [&] { return test::chunks_in(out + "/work/select_answers") >= 1; })) << run.log();
    kill(run.pid(), SIGTERM);  // the shell exec'd align2: this is the rank
    EXPECT_EQ(run.wait(120), 1) << run.log();
    EXPECT_NE(run.log().find("stopped by signal 15 in stage select_answers"), std::string::npos) << run.log();
  }
  const std::size_t committed = test::chunks_in(out + "/work/select_questions") + test::chunks_in(out + "/work/select_answers");
  const std::string head = job + "/arm/score_head.safetensors", original = test::read_file(head);
  flip_bytes(head, original.size() - 4, 4);  // the last weight of score.weight
  auto refused = test::run_command(command);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_NE(refused.err.find(out + " holds another run: the job config or a model changed since (config fingerprint differs)"),
            std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  EXPECT_EQ(test::chunks_in(out + "/work/select_questions") + test::chunks_in(out + "/work/select_answers"), committed);
  EXPECT_FALSE(fs::exists(out + "/summary.json"));

  test::write_file(head, original);
  auto resumed = test::run_command(command);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(out + "/curated.json"), test::read_file(ref() + "/curated.json"));
  EXPECT_EQ(resumed_items(out + "/summary.json", "select_questions"), 40u);
  fs::remove_all(job);
}

// The base LLaVA the reward models score with (reward_config.json's base_model) changed in
// place, same size, between runs: refused, with stage 3 (where it is the rewrite model too) and
// without (the reward models' fingerprints cover the base and vision folders they read).
void expect_base_change_refused(const std::string& job, const std::string& command) {
  auto first = test::run_command(command);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string weights = job + "/base/model.safetensors";
  flip_bytes(weights, fs::file_size(weights) - 64, 4);
  auto again = test::run_command(command);
  EXPECT_EQ(again.exit_code, 1) << "a changed base model was not noticed:\n" << again.err;
  EXPECT_NE(again.err.find("config fingerprint differs"), std::string::npos) << again.err;
  fs::remove_all(job);
}

TEST_F(FaultMatrix, ASameSizeChangeOfTheBaseWeightsIsRefused) {
  const std::string job = root() + "/base-changed";
  copy_job(root(), job);
  expect_base_change_refused(job, curate(job + "/out", 1, job + "/job.json"));
}

TEST_F(FaultMatrix, ASameSizeChangeOfTheBaseWeightsIsRefusedWithoutStage3) {
  const std::string job = root() + "/base-changed-no-rewrite";
  copy_job(root(), job);
  expect_base_change_refused(job, curate(job + "/out", 1, job + "/job.json") + " --set rewrite=false");
}

// A reward-model folder damaged in one way: each is refused at load with an error naming the
// file or tensor, exit 1, and no output written.
TEST_F(FaultMatrix, DamagedCheckpointsAreRefusedNamingTheFileOrTensor) {
  const std::string dir = root() + "/bad-checkpoints";
  fs::create_directories(dir);
  auto copy_of = [&](const std::string& from, const std::string& name) {  // a reward model of the shared base, or the base
    if (from == "qrm") test::write_reward_model(dir + "/" + name, "question", 1, root() + "/base");
    else fs::copy(root() + "/" + from, dir + "/" + name, fs::copy_options::recursive);
    return dir + "/" + name;
  };
  struct Case {
    std::string kind, question_model, named;
  };
  std::vector<Case> cases;
  {
    std::string q = copy_of("qrm", "truncated");
    fs::resize_file(q + "/score_head.safetensors", fs::file_size(q + "/score_head.safetensors") / 2);
    cases.push_back({"truncated safetensors", q, "score_head.safetensors"});
  }
  {
    std::string q = copy_of("qrm", "huge-header");
    std::string bytes = test::read_file(q + "/score_head.safetensors");
    for (int k = 0; k < 8; ++k) bytes[std::size_t(k)] = k < 7 ? '\xff' : '\x0f';  // a header length far past the file
    test::write_file(q + "/score_head.safetensors", bytes);
    cases.push_back({"safetensors header length past the end", q, "score_head.safetensors"});
  }
  {
    std::string q = dir + "/mis-shaped";
    test::write_reward_model(q, "question", 1, root() + "/base", 16);  // score.weight [1, 16] on a 32-wide base
    cases.push_back({"mis-shaped tensor", q, "score.weight"});
  }
  {
    std::string q = copy_of("qrm", "head-as-bin");
    fs::remove(q + "/score_head.safetensors");
    test::write_file(q + "/score_head.bin", std::string("\x80\x02}q\x00.", 6));
    cases.push_back({"score head as a pickle", q, "score_head.safetensors: no such checkpoint file"});
  }
  {
    std::string base = copy_of("base", "base-bin");
    fs::remove(base + "/model.safetensors");
    test::write_file(base + "/pytorch_model.bin", std::string("\x80\x02}q\x00.", 6));
    test::write_reward_model(dir + "/on-bin-base", "question", 1, "../base-bin");
    cases.push_back({"base weights as a pickle", dir + "/on-bin-base", "only pickle weights found (pytorch_model.bin)"});
  }
  {
    std::string q = copy_of("qrm", "bad-config");
    test::write_file(q + "/reward_config.json", "{\"format\": \"align2-reward-model\", ");
    cases.push_back({"reward_config.json not JSON", q, "reward_config.json"});
  }
  {
    std::string base = copy_of("base", "base-truncated");
    fs::resize_file(base + "/model.safetensors", fs::file_size(base + "/model.safetensors") - 100);
    test::write_reward_model(dir + "/on-truncated-base", "question", 1, "../base-truncated");
    cases.push_back({"truncated base weights", dir + "/on-truncated-base", "model.safetensors"});
  }
  for (const Case& c : cases) {
    const std::string out = c.question_model + "-out";
    auto r = test::run_command(curate(out, 1) + " --set question_model=" + c.question_model);
    std::printf("%-40s exit %d: %s", c.kind.c_str(), r.exit_code, r.err.substr(0, 300).c_str());
    if (r.err.empty() || r.err.back() != '\n') std::printf("\n");
    EXPECT_EQ(r.exit_code, 1) << c.kind << ": " << r.err;
    EXPECT_NE(r.err.find(c.named), std::string::npos) << c.kind << ": " << r.err;
    for (const char* f : {"curated.json", "scores.h5", "summary.json"}) EXPECT_FALSE(fs::exists(out + "/" + f)) << c.kind;
  }
  fs::remove_all(dir);
}

// Bytes of an image file of each damaged kind.
std::string png_header(std::uint32_t width, std::uint32_t height) {
  std::string b = "\x89PNG\r\n\x1a\n";
  b += std::string("\0\0\0\x0dIHDR", 8);
  for (std::uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) b += char((v >> shift) & 0xff);
  b += std::string("\x08\x02\0\0\0", 5) + std::string("\0\0\0\0", 4);  // 8-bit RGB; CRC not checked before the size
  return b;
}

// Every kind of bad input in one pool: each record ends in scores.h5 with its status and reason
// (and for images the decoder's code in the message), the row count is the input count, and
// summary.json counts the reasons alike.
TEST_F(FaultMatrix, EveryBadInputKindEndsWithANamedStatus) {
  std::mt19937 rng(fault_seed() + 6);
  const std::string job = root() + "/bad-input", images = job + "/images";
  const int good = 12;
  test::write_curate_job(job, good, {{"rewrite", false}, {"max_record_bytes", 65536}});
  json first = json::parse(test::read_file(job + "/pool.json"))[0];
  const std::string photo = first["image"].get<std::string>();
  auto record = [](const std::string& id, const std::string& image, const std::string& question) {
    json r = {{"id", id},
              {"conversations", {{{"from", "human"}, {"value", question}}, {{"from", "gpt"}, {"value", "An answer."}}}}};
    if (!image.empty()) r["image"] = image;
    return r.dump();
  };
  auto with_image = [&](const std::string& id, const std::string& image) {
    return record(id, image, "<image>\nWhat does the picture " + id + " show?");
  };
  // Damaged images under the image root.
  test::write_file(images + "/zero.jpg", "");
  std::string noise(2048, '\0');
  for (char& c : noise) c = char(rng());
  noise[0] = 'x';
  test::write_file(images + "/noise.jpg", noise);
  test::write_file(images + "/scan.tif", std::string("II*\0", 4) + std::string(200, '\0'));
  const std::string jpeg = test::read_file(images + "/" + photo);
  test::write_file(images + "/cut.jpg", jpeg.substr(0, jpeg.size() * 2 / 5));
  test::write_file(images + "/cut.png", png_header(64, 64).substr(0, 20));
  test::write_file(images + "/bomb.png", png_header(100000, 100000));
  test::write_file(images + "/cmyk.jpg", std::string("\xff\xd8\xff\xc0\x00\x14\x08\x00\x10\x00\x10\x04"
                                                     "\x01\x11\x00\x02\x11\x00\x03\x11\x00\x04\x11\x00\xff\xd9",
                                                     26));
  fs::copy_file(images + "/" + photo, job + "/outside.jpg");
  fs::create_symlink(job + "/outside.jpg", images + "/escape.jpg");
  json duplicate = first;
  duplicate["id"] = "copy-of-the-first";

  struct Kind {
    std::string name, line, status, reason, detail;
  };
  const std::string answer = R"({"from": "gpt", "value": "a"})", question = R"({"from": "human", "value": "q"})";
  const std::vector<Kind> kinds = {
      {"malformed JSON line", R"({"id": "broken", "conversations": [)", "invalid", "not_json", "not JSON"},
      {"NUL byte", std::string("{\"id\": \"nul\0\"}", 14), "invalid", "not_json", ""},
      {"not an object", "[1, 2]", "invalid", "not_object", ""},
      {"missing id", R"({"conversations": [)" + question + ", " + answer + "]}", "invalid", "missing_field", "\"id\""},
      {"missing conversations", R"({"id": "no-turns"})", "invalid", "missing_field", ""},
      {"conversations not an array", R"({"id": "text", "conversations": "hello"})", "invalid", "wrong_type", ""},
      {"turn value not a string",
       R"({"id": "number", "conversations": [{"from": "human", "value": 42}, )" + answer + "]}", "invalid",
       "wrong_type", ""},
      {"empty conversation", R"({"id": "empty", "conversations": []})", "invalid", "empty_conversation", ""},
      {"answer first", R"({"id": "gpt-first", "conversations": [)" + answer + ", " + question + "]}", "invalid",
       "bad_roles", ""},
      {"unanswered question", R"({"id": "open", "conversations": [)" + question + "]}", "invalid", "bad_roles", ""},
      {"unknown role", R"({"id": "system", "conversations": [{"from": "system", "value": "s"}, )" + answer + "]}",
       "invalid", "bad_roles", ""},
      {"image without <image>", record("no-tag", photo, "What is it?"), "invalid", "bad_image_tag", ""},
      {"<image> twice", record("two-tags", photo, "<image>\n<image>\nWhat is it?"), "invalid", "bad_image_tag", ""},
      {"<image> without an image", record("no-image", "", "<image>\nWhat is it?"), "invalid", "bad_image_tag", ""},
      {"absolute image path", with_image("absolute", "/etc/hostname"), "invalid", "image_path_absolute", ""},
      {"path traversal", with_image("traversal", "../../../etc/hostname"), "invalid", "image_path_escapes", ""},
      {"symlink out of the image root", with_image("symlink", "escape.jpg"), "invalid", "image_path_escapes", ""},
      {"missing image", with_image("missing", "nowhere.jpg"), "missing_image", "missing_image", ""},
      {"non-UTF-8 text", R"({"id": "latin1", "conversations": [{"from": "human", "value": "caf)" "\xe9" R"(?"}, )" + answer + "]}",
       "invalid", "invalid_utf8", ""},
      {"overlong record", record("long", "", std::string(100000, 'q')), "invalid", "record_too_large", ""},
      {"duplicate record", duplicate.dump(), "duplicate", "duplicate", ""},
      {"zero-byte image", with_image("zero", "zero.jpg"), "invalid", "bad_image", "[empty]"},
      {"random bytes as .jpg", with_image("noise", "noise.jpg"), "invalid", "bad_image", "[unsupported_format]"},
      {"TIFF image", with_image("tiff", "scan.tif"), "invalid", "bad_image", "[unsupported_format]"},
      {"truncated JPEG", with_image("cut-jpeg", "cut.jpg"), "invalid", "bad_image", "[unreadable]"},
      {"truncated PNG header", with_image("cut-png", "cut.png"), "invalid", "bad_image", "[unreadable]"},
      {"decompression bomb (100000x100000)", with_image("bomb", "bomb.png"), "invalid", "bad_image", "[too_large]"},
      {"CMYK JPEG", with_image("cmyk", "cmyk.jpg"), "invalid", "bad_image", "[cmyk]"},
  };
  std::string lines;
  for (const Kind& k : kinds) lines += k.line + "\n";
  add_pool(job, "bad.jsonl", lines);
  auto run = test::run_command(curate(job + "/out", 1, job + "/job.json"));
  ASSERT_EQ(run.exit_code, 0) << run.err;

  ShardData scores = read_shard(job + "/out/scores.h5");
  json summary = json::parse(test::read_file(job + "/out/summary.json"));
  const std::size_t inputs = std::size_t(good) + kinds.size();
  ASSERT_EQ(scores.rows.size(), inputs);
  EXPECT_EQ(summary["input_records"], inputs);
  std::map<std::string, std::uint64_t> by_reason;
  for (int i = 0; i < good; ++i) EXPECT_EQ(scores.rows[std::size_t(i)].status, Status::valid) << i;
  for (std::size_t k = 0; k < kinds.size(); ++k) {
    const ShardRow& r = scores.rows[std::size_t(good) + k];
    std::printf("%-36s %-14s %-20s %s\n", kinds[k].name.c_str(), status_name(r.status), reason_name(r.reason),
                r.message.substr(0, 160).c_str());
    EXPECT_EQ(r.index, std::uint64_t(good) + k);
    EXPECT_EQ(status_name(r.status), kinds[k].status) << kinds[k].name << ": " << r.message;
    EXPECT_EQ(reason_name(r.reason), kinds[k].reason) << kinds[k].name << ": " << r.message;
    EXPECT_NE(r.message.find(kinds[k].detail), std::string::npos) << kinds[k].name << ": " << r.message;
    EXPECT_FALSE(r.message.empty()) << kinds[k].name;
    EXPECT_NE(r.kept, 1) << kinds[k].name;
    ++by_reason[kinds[k].reason];
  }
  EXPECT_EQ(summary["by_reason"], json(by_reason));
  fs::remove_all(job);
}

}  // namespace
}  // namespace align2
