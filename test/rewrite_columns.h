// Test data for the per-turn rewrite columns of a ShardRow.
#pragma once

#include <cstdint>
#include <string>

#include "core/store/shard_store.h"

namespace align2::test {

// Fills the per-turn rewrite columns of `row` to match its rewritten_questions: replies
// built from the texts, every second turn fallen back (length_ratio); with `keep`, the other
// turns keep their rewrite (rows whose records have conversations to rewrite).
inline void fill_rewrite_columns(ShardRow& row, bool keep) {
  const std::size_t n = row.rewritten_questions.size();
  row.rewrite_replies.assign(n, "");
  row.rewrite_reasons.assign(n, "");
  row.rewrite_kept.assign(n, 0);
  row.review_p.assign(n, 0.0f);
  row.review_p_order1.assign(n, 0.3f);
  row.review_p_order2.assign(n, 0.7f);
  for (std::size_t t = 0; t < n; ++t) {
    row.rewrite_replies[t] = "Question: " + row.rewritten_questions[t] + "\nAnswer: " + row.rewritten_answers[t];
    row.rewrite_reasons[t] = t % 2 ? "length_ratio" : "";
    row.rewrite_kept[t] = std::int8_t(keep && t % 2 == 0);
    row.review_p[t] = 0.25f + 0.5f * float(t % 2 == 0);
  }
}

}  // namespace align2::test
