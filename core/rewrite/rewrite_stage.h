// Stage 3's rows, counts and output records (torch-free). Each kept sample gets one row of
// the "rewrite" stage; its per-turn columns (docs/hdf5-schema.md) hold the parsed rewrite,
// the model's reply, why a rewrite fell back, the review probabilities and which version
// ends in curated.json.
//
// Per sample, for summary.json's stages.rewrite (attempted = kept_rewrite + kept_original +
// fallback = the curated samples):
//   kept_rewrite   at least one turn uses its rewrite
//   kept_original  no turn uses its rewrite, and every turn was reviewed (the originals won)
//   fallback       no turn uses its rewrite, and at least one fell back (a reason) or the
//                  whole sample could not be rewritten (its image)
#pragma once

#include <cstdint>
#include <array>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rewrite/rewriter.h"
#include "core/store/shard_store.h"

namespace align2 {

// The rewrite-stage row of `sample` from its result (`row` = sample_row(sample), record cleared).
void fill_rewrite_row(const Sample& sample, const SampleRewrite& result, ShardRow* row);

struct RewriteCounts {
  std::uint64_t attempted = 0, kept_rewrite = 0, kept_original = 0, fallback = 0;  // samples
  std::uint64_t turns = 0, turns_kept_rewrite = 0, turns_kept_original = 0, turns_fallback = 0;
  std::map<std::string, std::uint64_t> by_reason;                       // turns per fallback reason
  std::map<std::string, std::array<std::uint64_t, 2>> by_subset;       // subset -> {attempted, kept_rewrite}

  void add(const ShardRow& row);          // one rewrite-stage row
  void add(const RewriteCounts& other);   // another rank's counts
  std::vector<std::uint8_t> serialize() const;
  static RewriteCounts deserialize(const std::vector<std::uint8_t>& bytes);
  nlohmann::json summary() const;         // stages.rewrite of summary.json
};

// The record text that ends in curated.json, in the form LLaVA's training reads
// (LazySupervisedDataset: "conversations"):
//  - a record in conversation form (or any form but the one below) with no kept rewrite:
//    `record` verbatim, byte for byte;
//  - one with kept rewrites (row.rewrite_kept[t] == 1): the same JSON object with those
//    turns' values replaced by the rewritten question and answer, written compactly;
//  - a one-turn {"instruction", "output"} record (LLaVA's GPT-4 QA files): rewritten as
//    {"id", "image", "conversations": [human: "<image>\n" + instruction, gpt: output], ...}
//    with its other fields (e.g. "type") after them, and its kept rewrite applied; the
//    "<image>\n" only when it has an image and the instruction holds no tag.
// Throws std::runtime_error naming the row's id and key when the record has neither form or
// not the row's turns (a bug, or a shard that does not belong to the pool).
std::string curated_record(const std::string& record, const ShardRow& row);

}  // namespace align2
