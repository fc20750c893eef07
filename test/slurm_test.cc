// align2 on Slurm: the script `align2 slurm-script` writes, submitted with sbatch to the
// loopback cluster scripts/test.sh starts (scripts/slurm-local.sh), runs a 2-rank curate with
// `srun --mpi=pmix` whose outputs equal a plain `mpirun -np 2` run; USR1 to the batch shell
// (what --signal=B:USR1@S sends before the time limit) stops the ranks, the job requeues
// itself and the requeued run resumes to the same outputs. Without a reachable Slurm
// (SLURM_CONF unset or `scontrol ping` failing) every test skips.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Why Slurm cannot be used here, or "" when it can. Only a cluster named by SLURM_CONF is
// used (scripts/test.sh sets it to its loopback Slurm): the jobs read the test's temporary
// folder, which a real cluster's nodes do not see. Slurm's clients retry a missing
// configuration file for 60 s, so the file is looked for first.
std::string slurm_unavailable() {
  const char* env = std::getenv("SLURM_CONF");
  if (!env || !*env) return "SLURM_CONF is not set; scripts/test.sh starts a loopback Slurm (scripts/slurm-local.sh)";
  if (!fs::exists(env)) return std::string("SLURM_CONF=") + env + " does not exist";
  auto ping = test::run_command("timeout 20 scontrol ping");
  if (ping.exit_code != 0 || ping.out.find("UP") == std::string::npos)
    return "Slurm does not answer (scontrol ping: " + ping.out + ping.err + ")";
  return "";
}

// root/job.json over `records` real records, short rewrites (test/model_fixture.h).
void write_job(const std::string& root, int records) {
  test::write_curate_job(root, records, {{"rewrite_max_new_tokens", 16}});
}

std::string read_file_or(const std::string& path) {
  return fs::exists(path) ? test::read_file(path) : "(no " + path + ")\n";
}

std::string summary_without_timings(const std::string& path) {
  json j = json::parse(test::read_file(path));
  j.erase("timings");
  return j.dump(2);
}

std::string field(const std::string& line, const std::string& key) {
  std::size_t at = line.find(" " + key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 2;
  return line.substr(at, line.find_first_of(" \n", at) - at);
}

struct SlurmJob {
  std::string id;
  std::string state;  // the last JobState seen
  std::string line;   // the last `scontrol show job -o` line
  ~SlurmJob() {       // a test that fails half-way leaves nothing running
    if (!id.empty() && state != "COMPLETED" && state != "FAILED" && state != "CANCELLED")
      test::run_command("scancel " + id);
  }
  void refresh() {
    auto r = test::run_command("scontrol show job -o " + id);
    if (r.exit_code != 0) return;
    line = r.out;
    state = field(r.out, "JobState");
  }
  // Polls scontrol every 100 ms (sbatch --wait polls far more slowly) until `done(state)`.
  template <class Done>
  bool wait(Done done, double timeout_s) {
    auto start = Clock::now();
    for (;;) {
      refresh();
      if (done(state)) return true;
      if (seconds_since(start) > timeout_s) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  bool wait_finished(double timeout_s) {
    return wait([](const std::string& s) {
      return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED" || s == "TIMEOUT" || s == "NODE_FAIL" ||
             s == "OUT_OF_MEMORY" || s == "BOOT_FAIL" || s == "DEADLINE" || s == "PREEMPTED";
    }, timeout_s);
  }
};

class Slurm : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    skip_reason_ = new std::string(slurm_unavailable());
    if (!skip_reason_->empty()) return;
    root_ = new std::string(test::scratch_dir("slurm"));
    write_job(*root_, 24);
    // The reference: a plain 2-rank Open MPI run.
    auto start = Clock::now();
    auto ref = test::run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --oversubscribe "
                                 "--bind-to none " + test::align2_bin() + " curate --config " + *root_ +
                                 "/job.json --set output_dir=" + *root_ + "/mpirun");
    std::printf("mpirun -np 2 curate: %.1f s\n", seconds_since(start));
    reference_ok_ = ref.exit_code == 0;
    if (!reference_ok_) std::fprintf(stderr, "reference mpirun run failed:\n%s\n", ref.err.c_str());
  }
  void SetUp() override {
    if (!skip_reason_->empty()) GTEST_SKIP() << *skip_reason_;
    ASSERT_TRUE(reference_ok_);
  }
  const std::string& root() const { return *root_; }

  // `align2 slurm-script` for 1 node x 2 CPU ranks, written to root/NAME.sbatch, submitted.
  SlurmJob submit(const std::string& name, const std::vector<std::string>& sets) {
    std::string cmd = "cd " + root() + " && " + test::align2_bin() +
                      " slurm-script --config job.json --nodes 1 --gpus-per-node 0 --ntasks-per-node 2 --time 10"
                      " --job-name align2-" + name + " --output " + name + "-%j.log";
    for (const std::string& s : sets) cmd += " --set " + s;
    auto script = test::run_command(cmd + " > " + name + ".sbatch");
    EXPECT_EQ(script.exit_code, 0) << script.err;
    auto sbatch = test::run_command("cd " + root() + " && sbatch --parsable " + name + ".sbatch");
    EXPECT_EQ(sbatch.exit_code, 0) << sbatch.err;
    SlurmJob job;
    job.id = sbatch.out.substr(0, sbatch.out.find_first_of(";\n"));
    return job;
  }
  std::string log(const std::string& name, const SlurmJob& job) const {
    std::string path = root() + "/" + name + "-" + job.id + ".log";
    return fs::exists(path) ? test::read_file(path) : "(no log " + path + ")";
  }
  void expect_reference_outputs(const std::string& out) const {
    EXPECT_EQ(test::read_file(out + "/curated.json"), test::read_file(root() + "/mpirun/curated.json"));
    EXPECT_EQ(summary_without_timings(out + "/summary.json"), summary_without_timings(root() + "/mpirun/summary.json"));
  }

  static std::string* skip_reason_;
  static std::string* root_;
  static bool reference_ok_;
};
std::string* Slurm::skip_reason_ = nullptr;
std::string* Slurm::root_ = nullptr;
bool Slurm::reference_ok_ = false;

TEST_F(Slurm, SbatchedScriptGivesTheOutputsOfMpirun) {
  auto start = Clock::now();
  SlurmJob job = submit("plain", {"output_dir=slurm-plain"});
  ASSERT_FALSE(job.id.empty());
  ASSERT_TRUE(job.wait_finished(300)) << "job " << job.id << " still " << job.state << "\n" << log("plain", job);
  std::printf("sbatch -> COMPLETED: %.1f s\n", seconds_since(start));
  ASSERT_EQ(job.state, "COMPLETED") << job.line << "\n" << log("plain", job);
  EXPECT_EQ(field(job.line, "ExitCode"), "0:0");
  std::string out = root() + "/slurm-plain";  // relative --set paths: from the folder slurm-script ran in
  expect_reference_outputs(out);
  json timings = json::parse(test::read_file(out + "/summary.json"))["timings"];
  EXPECT_EQ(timings["select_questions"]["ranks"], 2);  // srun made one 2-rank MPI job
  EXPECT_NE(log("plain", job).find(": 2 ranks on "), std::string::npos) << log("plain", job);
}

TEST_F(Slurm, Usr1StopsTheRanksAndTheRequeuedJobResumes) {
  auto start = Clock::now();
  // One item per chunk and per batch (neither changes results): the run lasts long enough to
  // be caught, and a stop loses little.
  SlurmJob job = submit("requeue", {"output_dir=slurm-requeue", "chunk_records=1", "batch_size=1"});
  ASSERT_FALSE(job.id.empty());
  const std::string work = root() + "/slurm-requeue/work/select_questions";
  auto committed = [&] {
    std::error_code ec;
    std::size_t n = 0;
    for (auto it = fs::directory_iterator(work, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
    return n;
  };
  ASSERT_TRUE(job.wait([&](const std::string& s) { return s != "PENDING" && s != "RUNNING" ? true : committed() >= 2; }, 300))
      << log("requeue", job);
  ASSERT_EQ(job.state, "RUNNING") << "the job ended before it could be signalled:\n" << log("requeue", job);
  // What --signal=B:USR1@S does S seconds before the time limit: USR1 to the batch shell only.
  auto signal = test::run_command("scancel --batch --signal=USR1 " + job.id);
  ASSERT_EQ(signal.exit_code, 0) << signal.err;
  ASSERT_TRUE(job.wait_finished(300)) << "job " << job.id << " still " << job.state << "\n" << log("requeue", job);
  std::printf("sbatch -> USR1 -> requeue -> COMPLETED: %.1f s\n", seconds_since(start));
  std::string text = log("requeue", job);
  ASSERT_EQ(job.state, "COMPLETED") << job.line << "\n" << text;
  EXPECT_EQ(field(job.line, "Restarts"), "1") << job.line;
  EXPECT_NE(text.find("USR1: the time limit is near"), std::string::npos) << text;
  EXPECT_NE(text.find("requeueing job " + job.id), std::string::npos) << text;
  EXPECT_NE(text.find(" run 1: 2 ranks"), std::string::npos) << text;  // the second run of the same job
  std::string out = root() + "/slurm-requeue";
  expect_reference_outputs(out);
  json timings = json::parse(test::read_file(out + "/summary.json"))["timings"];
  std::uint64_t resumed = 0;
  for (const json& r : timings["select_questions"]["per_rank"]) resumed += r["resumed"].get<std::uint64_t>();
  EXPECT_GE(resumed, 2u);  // the requeued run reused the first run's committed chunks
}

// One night of slurm/nightly.sh over the job config `job` (in root()): submits it, waits for both
// jobs and checks they completed. Returns the night's output folder.
std::string run_night(const std::string& root, const std::string& job, const std::string& night) {
  auto start = Clock::now();
  auto submitted = test::run_command("cd " + root + " && ALIGN2_BIN=" + test::align2_bin() +
                                     " ALIGN2_SBATCH_ARGS='--nodes=1 --ntasks-per-node=2 --time=10' ALIGN2_DATE=" + night +
                                     " bash " + test::source_path("slurm/nightly.sh") + " " + job + " nightly");
  EXPECT_EQ(submitted.exit_code, 0) << submitted.err;
  SlurmJob curate, merge;
  std::size_t blank = submitted.out.find(' ');
  if (blank == std::string::npos) {
    ADD_FAILURE() << submitted.out;
    return "";
  }
  curate.id = submitted.out.substr(0, blank);
  merge.id = submitted.out.substr(blank + 1, submitted.out.find('\n') - blank - 1);
  const std::string out = root + "/nightly/" + night;
  auto logs = [&] {
    return read_file_or(out + "/align2-nightly-" + curate.id + ".out") +
           read_file_or(out + "/align2-merge-" + merge.id + ".out");
  };
  merge.refresh();
  EXPECT_NE(merge.line.find("Dependency=afterok:" + curate.id), std::string::npos) << merge.line;
  EXPECT_TRUE(merge.wait_finished(300)) << merge.line << logs();
  curate.refresh();
  std::printf("nightly.sh %s -> curate, merge COMPLETED: %.1f s\n", night.c_str(), seconds_since(start));
  EXPECT_EQ(curate.state, "COMPLETED") << curate.line << logs();
  EXPECT_EQ(merge.state, "COMPLETED") << merge.line << logs();
  EXPECT_NE(logs().find("merge exit 0"), std::string::npos) << logs();
  return out;
}

std::uint64_t stage_total(const std::string& out, const char* stage, const char* count) {
  json timings = json::parse(test::read_file(out + "/summary.json"))["timings"];
  return timings[stage].value(count, std::uint64_t(999999));
}

// slurm/nightly.sh: the template slurm/curate.sbatch into a dated folder, then slurm/merge.sbatch
// once it succeeded (--dependency=afterok). The next night, over a pool with one record's text
// and one image changed, scores only the records those touch (the score cache in
// nightly/score_cache) and ends as a full run does.
TEST_F(Slurm, NightlyChainsCurateAndMergeAndReusesScores) {
  const std::string night1 = run_night(root(), "job.json", "night-1");
  ASSERT_FALSE(night1.empty());
  expect_reference_outputs(night1);
  EXPECT_EQ(stage_total(night1, "select_questions", "cache_reused"), 0u);
  EXPECT_EQ(stage_total(night1, "select_questions", "model_scored"), 24u);

  // Night 2: record 0's answer edited; the image of record 5 replaced (a copy of the image folder).
  json pool = json::parse(test::read_file(root() + "/pool.json"));
  pool[0]["conversations"][1]["value"] = pool[0]["conversations"][1]["value"].get<std::string>() + " Edited.";
  test::write_file(root() + "/pool2.json", pool.dump(1));
  fs::copy(root() + "/images", root() + "/images2", fs::copy_options::recursive);
  const std::string changed = pool[5]["image"].get<std::string>(), other = pool[6]["image"].get<std::string>();
  ASSERT_NE(changed, other);
  fs::copy_file(root() + "/images/" + other, root() + "/images2/" + changed, fs::copy_options::overwrite_existing);
  std::uint64_t touched = 0;  // records the changes touch
  for (std::size_t i = 0; i < pool.size(); ++i) touched += i == 0 || pool[i]["image"] == changed;
  json job = json::parse(test::read_file(root() + "/job.json"));
  job["pools"] = {"pool2.json"};
  job["subsets"] = {{"pool2.json", "conversation"}};
  job["image_root"] = "images2";
  test::write_file(root() + "/job2.json", job.dump(2));

  const std::string night2 = run_night(root(), "job2.json", "night-2");
  ASSERT_FALSE(night2.empty());
  EXPECT_EQ(stage_total(night2, "select_questions", "model_scored"), touched);
  EXPECT_EQ(stage_total(night2, "select_questions", "cache_reused"), 24u - touched);
  EXPECT_LT(stage_total(night2, "select_answers", "model_scored"), 12u);
  // The reference: the same pool without the cache, a plain 2-rank run.
  auto ref = test::run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --oversubscribe "
                               "--bind-to none " + test::align2_bin() + " curate --config " + root() +
                               "/job2.json --set output_dir=" + root() + "/night-2-full");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(test::read_file(night2 + "/curated.json"), test::read_file(root() + "/night-2-full/curated.json"));
  EXPECT_EQ(summary_without_timings(night2 + "/summary.json"),
            summary_without_timings(root() + "/night-2-full/summary.json"));
  const std::string html = test::read_file(night2 + "/report.html");
  EXPECT_NE(html.find(fmt::format("score cache: {} samples reused", 24u - touched)), std::string::npos);
}

}  // namespace
}  // namespace align2
