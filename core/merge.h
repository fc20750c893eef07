// The final step of every job: all stage shards → curated.json, scores.h5, summary.json,
// report.html.
//
// Checks, each a std::runtime_error naming what is wrong: all shards share the input
// and config fingerprints; every stage has one shard per rank of its run; the first
// stage holds every input record exactly once (missing pool indices and repeated keys
// are named); each later stage holds exactly the records the stage before it kept.
// Global order: final score descending, then key ascending.
//
// Memory: the merge streams. It keeps per input record only fixed-size state (the key as
// 16 bytes, the final score, the stage decisions and flags: ~30 bytes; 8 more when the first
// stage's rows are not in pool order), per later-stage row its pool index and position (16
// bytes), per kept record its place in the global order (24 bytes), and one block of rows
// (4096) at a time: record texts, messages and rewritten turns are never all in memory
// (docs/architecture.md, "Memory of the merge"). report.html is written by write_report.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace align2 {

// Stage names in cascade order; shards carry one of them in their `stage` attribute.
const std::vector<std::string>& stage_order();

struct MergeResult {
  std::uint64_t input_records = 0;
  std::uint64_t kept = 0;
  std::string curated_path;  // <output_dir>/curated.json
  std::string scores_path;   // <output_dir>/scores.h5
  std::string summary_path;  // <output_dir>/summary.json
  std::string report_path;   // <output_dir>/report.html (core/report.h), after summary.json; "" if not written
};

struct MergeOptions {
  bool report = true;  // also write report.html (core/report.h) once summary.json is written
};

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir);
MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir,
                         const MergeOptions& options);

// Shard paths under <output_dir>/shards/<stage>/rank-*.h5, sorted.
std::vector<std::string> find_shards(const std::string& output_dir);

// <output_dir>/shards/<stage>/rank-00003.h5
std::string shard_path(const std::string& output_dir, const std::string& stage, int rank);

// Writes `content` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& content);

// A file written piece by piece through "<path>.tmp-<pid>" and renamed over `path` by
// commit(); destroyed without commit, the temporary is removed and `path` is untouched.
// Creates parent folders. Errors: std::runtime_error naming `path` ("cannot write (disk
// full?)", "cannot rename the finished file into place: ..."). write_file_atomic is one
// write and commit.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  void write(std::string_view bytes);
  void commit();
  std::uint64_t bytes_written() const { return bytes_; }

 private:
  [[noreturn]] void fail_write();

  std::string path_;
  std::string tmp_;
  std::FILE* file_ = nullptr;  // open until commit or failure
  std::uint64_t bytes_ = 0;
  bool committed_ = false;
};

}  // namespace align2
