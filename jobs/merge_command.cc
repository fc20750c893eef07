// align2 merge: stage shards → curated.json, scores.h5, summary.json.
#include <fmt/format.h>

#include <iostream>

#include "core/pipeline/merge.h"
#include "jobs/cli.h"
#include "core/store/output_layout.h"

namespace align2::cli {

int run_merge(const Args& args) {
  std::string out = args.get("output-dir");
  if (out.empty()) throw UsageError("--output-dir is required");
  std::vector<std::string> shards = args.positional;
  if (shards.empty()) shards = find_shards(out);
  if (shards.empty()) throw UsageError(fmt::format("no SHARD given and none under {}/shards", out));
  MergeResult r = merge_shards(shards, out);
  std::cout << fmt::format("merged {} shards: {} input records, {} kept\n{}\n{}\n{}\n{}\n", shards.size(),
                           r.input_records, r.kept, r.curated_path, r.scores_path, r.summary_path, r.report_path);
  return 0;
}

}  // namespace align2::cli
