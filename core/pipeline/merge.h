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
#include <string>
#include <vector>

namespace align2 {

struct MergeResult {
  std::uint64_t input_records = 0;
  std::uint64_t kept = 0;
  std::string curated_path;  // <output_dir>/curated.json
  std::string scores_path;   // <output_dir>/scores.h5
  std::string summary_path;  // <output_dir>/summary.json
  std::string report_path;   // <output_dir>/report.html (core/pipeline/report.h), after summary.json; "" if not written
};

struct MergeOptions {
  bool report = true;  // also write report.html (core/pipeline/report.h) once summary.json is written
};

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir);
MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir,
                         const MergeOptions& options);

}  // namespace align2
