// Bounded memory: the merge (and the whole cascade) keep small fixed-size state per record,
// never all record texts. Each case runs the work on a pool of ~20K and of ~80K records
// (about 1 KB of text each) in a forked child and reads the child's peak RSS (VmHWM);
// the growth from 20K to 80K records, per added record, must stay far below the text's
// size: under kMaxBytesPerRecord.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/pipeline/curation.h"
#include "core/pipeline/merge.h"
#include "core/pipeline/report.h"
#include "core/store/shard_store.h"
#include "test/test_scorer.h"
#include "test/test_support.h"
#include "core/store/output_layout.h"

namespace align2 {
namespace {

using nlohmann::json;

constexpr std::uint64_t kSmall = 20000;
constexpr std::uint64_t kLarge = 80000;
// Record texts are ~1 KB each: holding them would cost more than 1000 bytes per record.
constexpr double kMaxBytesPerRecord = 250;

// kB of a "VmHWM:" / "VmRSS:" line of /proc/self/status.
long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t len = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, len, field) == 0) return std::stol(line.substr(len));
  return -1;
}

struct ChildRun {
  bool ok = false;
  std::string error;
  long start_kb = 0;  // RSS when the work began
  long peak_kb = 0;   // peak RSS (VmHWM) when it ended
  double seconds = 0;
  long growth_kb() const { return peak_kb - start_kb; }
};

// Runs `work` in a forked child; returns its RSS at start and peak, or its error.
ChildRun run_in_child(const std::function<void()>& work) {
  malloc_trim(0);  // the parent's free heap would otherwise serve the child's first allocations
  int fds[2];
  if (pipe(fds) != 0) return {false, "pipe failed"};
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string message;
    const long start = status_kb("VmRSS:");
    auto t0 = std::chrono::steady_clock::now();
    int code = 0;
    try {
      work();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      message = "ok " + std::to_string(start) + " " + std::to_string(status_kb("VmHWM:")) + " " + std::to_string(s);
    } catch (const std::exception& e) {
      message = std::string("error ") + e.what();
      code = 1;
    }
    ssize_t ignored = write(fds[1], message.data(), message.size());
    (void)ignored;
    close(fds[1]);
    _exit(code);
  }
  close(fds[1]);
  std::string message;
  char buffer[4096];
  ssize_t got;
  while ((got = read(fds[0], buffer, sizeof buffer)) > 0) message.append(buffer, std::size_t(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ChildRun run;
  if (message.rfind("ok ", 0) == 0) {
    run.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::sscanf(message.c_str(), "ok %ld %ld %lf", &run.start_kb, &run.peak_kb, &run.seconds);
  } else {
    run.error = message.empty() ? "child died (status " + std::to_string(status) + ")" : message;
  }
  return run;
}

// Removes a scratch folder (hundreds of MB here) when the case ends.
struct RemoveOnExit {
  std::string dir;
  ~RemoveOnExit() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// ~`bytes` of lowercase words, a deterministic function of `seed`.
std::string words(std::uint64_t seed, std::size_t bytes) {
  static const char* const kWords[] = {"image", "shows", "a",      "small", "red",    "bus",   "near",  "the",
                                       "old",   "tower", "people", "walk",  "along",  "river", "while", "dogs",
                                       "sleep", "under", "green",  "trees", "answer", "what",  "color", "is"};
  std::string s;
  std::uint64_t x = seed;
  while (s.size() < bytes) {
    x = mix(x);
    if (!s.empty()) s += ' ';
    s += kWords[x % (sizeof kWords / sizeof kWords[0])];
  }
  return s;
}

// A valid text-only LLaVA record of about 1 KB.
std::string llava_record(std::uint64_t i) {
  json r = {{"id", "r" + std::to_string(i)},
            {"conversations",
             {{{"from", "human"}, {"value", words(2 * i, 180) + "?"}},
              {{"from", "gpt"}, {"value", words(2 * i + 1, 760) + "."}}}}};
  return r.dump();
}

// ---------------------------------------------------------------------------
// Merge alone: shards written in blocks with ShardWriter, then merge_shards.

std::string hex_key(std::uint64_t i) {
  char buffer[33];
  std::snprintf(buffer, sizeof buffer, "%016" PRIx64 "%016" PRIx64, mix(i), mix(i ^ 0x5555555555555555ULL));
  return buffer;
}

ShardMeta merge_meta(const std::string& stage, int rank, std::uint64_t n) {
  ShardMeta m;
  m.align2_version = "test";
  m.config_fingerprint = "cfg";
  m.input_fingerprint = "pool";
  m.stage = stage;
  m.rank = rank;
  m.world_size = 2;
  m.input_records = n;
  m.stage_summary_json = json{{"stage", stage}}.dump();
  m.timings_json = json{{"busy_s", 1.0}}.dump();
  return m;
}

// Stage 1 keeps every other valid record; every 50th record is invalid; stage 2 keeps
// the survivors whose index is divisible by 4.
bool invalid_record(std::uint64_t i) { return i % 50 == 7; }
bool kept_by_stage1(std::uint64_t i) { return !invalid_record(i) && i % 2 == 0; }

// Writes select_questions and select_answers shards of 2 ranks for a pool of n records.
std::vector<std::string> write_merge_shards(const std::string& out, std::uint64_t n) {
  std::vector<std::string> paths;
  constexpr std::uint64_t kBlock = 1000;
  for (int rank = 0; rank < 2; ++rank) {  // stage 1: ranks cover [0, n/2) and [n/2, n)
    const std::uint64_t begin = rank == 0 ? 0 : n / 2, end = rank == 0 ? n / 2 : n;
    std::string path = shard_path(out, "select_questions", rank);
    ShardWriter writer(path, end - begin);
    for (std::uint64_t b = begin; b < end; b += kBlock) {
      std::vector<ShardRow> rows;
      for (std::uint64_t i = b; i < std::min(end, b + kBlock); ++i) {
        ShardRow r;
        r.index = i;
        r.key = hex_key(i);
        r.id = std::to_string(i);
        r.subset = i % 3 ? "conversation" : "detail";
        r.record = llava_record(i);
        if (invalid_record(i)) {
          r.status = Status::invalid;
          r.reason = Reason::not_json;
          r.message = "pool.json record " + std::to_string(i) + ": broken";
        } else {
          r.status = Status::valid;
          r.question_score = double(mix(i) % 1000000) / 1e6;
          r.selected_questions = kept_by_stage1(i) ? 1 : 0;
          r.truncated = 0;
        }
        rows.push_back(std::move(r));
      }
      writer.append(rows);
    }
    writer.commit(merge_meta("select_questions", rank, n));
    paths.push_back(path);
  }
  std::vector<std::uint64_t> survivors;
  for (std::uint64_t i = 0; i < n; ++i)
    if (kept_by_stage1(i)) survivors.push_back(i);
  for (int rank = 0; rank < 2; ++rank) {  // stage 2: the survivors, halved
    const std::size_t begin = rank == 0 ? 0 : survivors.size() / 2;
    const std::size_t end = rank == 0 ? survivors.size() / 2 : survivors.size();
    std::string path = shard_path(out, "select_answers", rank);
    ShardWriter writer(path);
    for (std::size_t b = begin; b < end; b += kBlock) {
      std::vector<ShardRow> rows;
      for (std::size_t p = b; p < std::min(end, b + kBlock); ++p) {
        const std::uint64_t i = survivors[p];
        ShardRow r;
        r.index = i;
        r.key = hex_key(i);
        r.id = std::to_string(i);
        r.subset = i % 3 ? "conversation" : "detail";
        r.status = Status::valid;
        r.answer_scores = {float(mix(i + 1) % 1000) / 1000.0f, 0.5f, 0.25f};
        r.answer_score = (double(r.answer_scores[0]) + 0.5 + 0.25) / 3;
        r.selected_answers = i % 4 == 0 ? 1 : 0;
        r.truncated = 0;
        rows.push_back(std::move(r));
      }
      writer.append(rows);
    }
    writer.commit(merge_meta("select_answers", rank, n));
    paths.push_back(path);
  }
  return paths;
}

struct Measured {
  ChildRun small, large;
  double bytes_per_record() const {
    return double(large.growth_kb() - small.growth_kb()) * 1024.0 / double(kLarge - kSmall);
  }
};

void report(const char* what, const Measured& m) {
  std::printf("%s: %" PRIu64 " records: peak RSS %ld kB (start %ld kB, +%ld kB, %.2f s); %" PRIu64
              " records: peak RSS %ld kB (start %ld kB, +%ld kB, %.2f s); growth %.1f bytes per added record "
              "(bound %.0f)\n",
              what, kSmall, m.small.peak_kb, m.small.start_kb, m.small.growth_kb(), m.small.seconds, kLarge,
              m.large.peak_kb, m.large.start_kb, m.large.growth_kb(), m.large.seconds, m.bytes_per_record(),
              kMaxBytesPerRecord);
  std::fflush(stdout);
}

// Writes the shards of a pool of n records into a fresh folder; returns the folder.
std::string merge_fixture(std::uint64_t n, std::vector<std::string>* paths) {
  const std::string out = test::scratch_dir("memory-merge-" + std::to_string(n));
  ChildRun writing = run_in_child([&] { write_merge_shards(out, n); });
  if (!writing.ok) throw std::runtime_error("writing the shards failed: " + writing.error);
  for (const char* stage : {"select_questions", "select_answers"})
    for (int r = 0; r < 2; ++r) paths->push_back(shard_path(out, stage, r));
  return out;
}

// merge_shards without report.html (whose memory the next test measures).
TEST(Memory, MergeKeepsNoRecordTexts) {
  Measured m;
  for (std::uint64_t n : {kSmall, kLarge}) {
    std::vector<std::string> paths;
    const std::string out = merge_fixture(n, &paths);
    RemoveOnExit cleanup{out};
    ChildRun merging = run_in_child([&] {
      MergeResult result = merge_shards(paths, out, MergeOptions{/*report=*/false});
      if (result.input_records != n) throw std::runtime_error("wrong record count");
    });
    ASSERT_TRUE(merging.ok) << merging.error;
    (n == kSmall ? m.small : m.large) = merging;

    // The outputs are whole: every kept record in curated.json, every record in scores.h5.
    json curated = json::parse(test::read_file(out + "/curated.json"));
    std::uint64_t expected = 0;
    for (std::uint64_t i = 0; i < n; ++i) expected += kept_by_stage1(i) && i % 4 == 0;
    EXPECT_EQ(curated.size(), expected);
    EXPECT_EQ(shard_row_count(out + "/scores.h5"), n);
  }
  report("merge_shards (no report.html)", m);
  EXPECT_LT(m.bytes_per_record(), kMaxBytesPerRecord);
}

// write_report over the merged outputs (merge_shards calls it last).
TEST(Memory, ReportKeepsNoRecordTexts) {
  Measured m;
  for (std::uint64_t n : {kSmall, kLarge}) {
    std::vector<std::string> paths;
    const std::string out = merge_fixture(n, &paths);
    RemoveOnExit cleanup{out};
    ChildRun merging = run_in_child([&] { merge_shards(paths, out, MergeOptions{/*report=*/false}); });
    ASSERT_TRUE(merging.ok) << merging.error;
    ChildRun reporting = run_in_child([&] { write_report(out); });
    ASSERT_TRUE(reporting.ok) << reporting.error;
    (n == kSmall ? m.small : m.large) = reporting;
  }
  report("write_report", m);
  EXPECT_LT(m.bytes_per_record(), kMaxBytesPerRecord);
}

// ---------------------------------------------------------------------------
// The whole cascade: run_curation on one rank with the test scorer.

// Writes a LLaVA JSON array of records [begin, end) to `path`, streaming.
void write_pool(const std::string& path, std::uint64_t begin, std::uint64_t end) {
  std::ofstream out(path, std::ios::binary);
  out << "[\n";
  for (std::uint64_t i = begin; i < end; ++i) out << (i > begin ? ",\n" : "") << llava_record(i);
  out << "\n]\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

TEST(Memory, CurationKeepsNoRecordTexts) {
  Measured m;
  for (std::uint64_t n : {kSmall, kLarge}) {
    const std::string dir = test::scratch_dir("memory-curation-" + std::to_string(n));
    RemoveOnExit cleanup{dir};
    ChildRun writing = run_in_child([&] {
      write_pool(dir + "/a.json", 0, n / 2);
      write_pool(dir + "/b.json", n / 2, n);
    });
    ASSERT_TRUE(writing.ok) << writing.error;
    json config = {{"pools", {dir + "/a.json", dir + "/b.json"}},
                   {"subsets", {{"a.json", "conversation"}, {"b.json", "detail"}}},
                   {"alpha", 0.5},
                   {"beta", 0.5},
                   {"batch_size", 64u},
                   {"progress_seconds", 0u},
                   {"output_dir", dir + "/out"}};
    ChildRun curating = run_in_child([&] {
      LocalComm comm;
      test::TestScorer scorer;
      CurationOptions options;
      options.progress = false;
      CurationResult result = run_curation(comm, parse_job_config(config, dir, {}, "memory test"), scorer, options);
      if (result.input_records != n) throw std::runtime_error("wrong record count");
    });
    ASSERT_TRUE(curating.ok) << curating.error;
    (n == kSmall ? m.small : m.large) = curating;
    EXPECT_EQ(shard_row_count(dir + "/out/scores.h5"), n);
  }
  report("run_curation", m);
  EXPECT_LT(m.bytes_per_record(), kMaxBytesPerRecord);
}

}  // namespace
}  // namespace align2
