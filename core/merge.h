// The final step of every job: all stage shards → curated.json, scores.h5, summary.json.
//
// Checks, each a std::runtime_error naming what is wrong: all shards share the input
// and config fingerprints; every stage has one shard per rank of its run; the first
// stage holds every input record exactly once (missing pool indices and repeated keys
// are named); each later stage holds exactly the records the stage before it kept.
// Global order: final score descending, then key ascending.
#pragma once

#include <cstdint>
#include <string>
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
};

MergeResult merge_shards(const std::vector<std::string>& shard_paths, const std::string& output_dir);

// Shard paths under <output_dir>/shards/<stage>/rank-*.h5, sorted.
std::vector<std::string> find_shards(const std::string& output_dir);

// <output_dir>/shards/<stage>/rank-00003.h5
std::string shard_path(const std::string& output_dir, const std::string& stage, int rank);

// Writes `content` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace align2
