// The output folder of a run: the stages in cascade order and where each rank's shard of a
// stage lies (<output_dir>/shards/<stage>/rank-NNNNN.h5). curation writes there, merge reads.
#pragma once

#include <string>
#include <vector>

namespace align2 {

// Stage names in cascade order; shards carry one of them in their `stage` attribute.
const std::vector<std::string>& stage_order();

// Shard paths under <output_dir>/shards/<stage>/rank-*.h5, sorted.
std::vector<std::string> find_shards(const std::string& output_dir);

// <output_dir>/shards/<stage>/rank-00003.h5
std::string shard_path(const std::string& output_dir, const std::string& stage, int rank);

}  // namespace align2
