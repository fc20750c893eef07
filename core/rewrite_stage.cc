#include "core/rewrite_stage.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/byte_io.h"
#include "core/record_validation.h"

namespace align2 {
namespace {

using nlohmann::json;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

void fill_rewrite_row(const Sample& sample, const SampleRewrite& result, ShardRow* row) {
  for (std::size_t t = 0; t < sample.turns.size(); ++t) {
    const TurnRewrite* tr = t < result.turns.size() ? &result.turns[t] : nullptr;
    bool failed = !result.failure.empty() || !tr;
    bool reviewed = !failed && tr->reviewed;
    row->rewritten_questions.push_back(failed ? "" : printable_text(tr->rewrite.question));
    row->rewritten_answers.push_back(failed ? "" : printable_text(tr->rewrite.answer));
    row->rewrite_replies.push_back(failed ? "" : printable_text(tr->reply));
    row->rewrite_reasons.push_back(failed ? "bad_image" : fallback_name(tr->reason));
    row->rewrite_kept.push_back(std::int8_t(!failed && tr->keep_rewrite));
    row->review_p.push_back(reviewed ? float(tr->review.p_rewrite) : kNaN);
    row->review_p_order1.push_back(reviewed ? float(tr->review.p_rewrite_order1) : kNaN);
    row->review_p_order2.push_back(reviewed ? float(tr->review.p_rewrite_order2) : kNaN);
  }
  if (!result.failure.empty()) row->message = printable_text(result.failure);
}

void RewriteCounts::add(const ShardRow& row) {
  ++attempted;
  bool any_kept = false, any_fallback = false;
  for (std::size_t t = 0; t < row.rewrite_kept.size(); ++t) {
    ++turns;
    if (row.rewrite_kept[t] == 1) {
      any_kept = true;
      ++turns_kept_rewrite;
    } else if (!row.rewrite_reasons[t].empty()) {
      any_fallback = true;
      ++turns_fallback;
      ++by_reason[row.rewrite_reasons[t]];
    } else {
      ++turns_kept_original;
    }
  }
  if (any_kept) ++kept_rewrite;
  else if (any_fallback) ++fallback;
  else ++kept_original;
  auto& s = by_subset[row.subset];
  ++s[0];
  s[1] += any_kept;
}

void RewriteCounts::add(const RewriteCounts& o) {
  attempted += o.attempted;
  kept_rewrite += o.kept_rewrite;
  kept_original += o.kept_original;
  fallback += o.fallback;
  turns += o.turns;
  turns_kept_rewrite += o.turns_kept_rewrite;
  turns_kept_original += o.turns_kept_original;
  turns_fallback += o.turns_fallback;
  for (const auto& [k, v] : o.by_reason) by_reason[k] += v;
  for (const auto& [k, v] : o.by_subset) {
    by_subset[k][0] += v[0];
    by_subset[k][1] += v[1];
  }
}

std::vector<std::uint8_t> RewriteCounts::serialize() const {
  ByteWriter w;
  for (std::uint64_t v : {attempted, kept_rewrite, kept_original, fallback, turns, turns_kept_rewrite,
                          turns_kept_original, turns_fallback})
    w.u64(v);
  w.u64(by_reason.size());
  for (const auto& [k, v] : by_reason) {
    w.str(k);
    w.u64(v);
  }
  w.u64(by_subset.size());
  for (const auto& [k, v] : by_subset) {
    w.str(k);
    w.u64(v[0]);
    w.u64(v[1]);
  }
  return std::move(w.bytes);
}

RewriteCounts RewriteCounts::deserialize(const std::vector<std::uint8_t>& bytes) {
  ByteReader r(bytes);
  RewriteCounts c;
  for (std::uint64_t* v : {&c.attempted, &c.kept_rewrite, &c.kept_original, &c.fallback, &c.turns,
                           &c.turns_kept_rewrite, &c.turns_kept_original, &c.turns_fallback})
    *v = r.u64();
  for (std::uint64_t n = r.u64(), i = 0; i < n; ++i) {
    std::string k = r.str();
    c.by_reason[k] = r.u64();
  }
  for (std::uint64_t n = r.u64(), i = 0; i < n; ++i) {
    std::string k = r.str();
    std::uint64_t a = r.u64();
    c.by_subset[k] = {a, r.u64()};
  }
  return c;
}

json RewriteCounts::summary() const {
  json subsets = json::object();
  for (const auto& [k, v] : by_subset) subsets[k] = {{"attempted", v[0]}, {"kept_rewrite", v[1]}};
  return {{"attempted", attempted},
          {"kept_rewrite", kept_rewrite},
          {"kept_original", kept_original},
          {"fallback", fallback},
          {"turns",
           {{"attempted", turns},
            {"kept_rewrite", turns_kept_rewrite},
            {"kept_original", turns_kept_original},
            {"fallback", turns_fallback},
            {"by_reason", by_reason}}},
          {"by_subset", subsets}};
}

std::string record_with_rewrites(const std::string& record, const ShardRow& row) {
  bool any = false;
  for (std::int8_t k : row.rewrite_kept) any |= k == 1;
  if (!any) return record;
  nlohmann::ordered_json rec = nlohmann::ordered_json::parse(record, nullptr, false);
  auto bad = [&](const std::string& what) {
    return std::runtime_error(fmt::format("record {} (key {}): cannot apply its rewrites: {}", row.id, row.key, what));
  };
  if (rec.is_discarded() || !rec.is_object()) throw bad("the record is not a JSON object");
  const std::size_t n = row.rewrite_kept.size();
  if (rec.contains("conversations")) {
    auto& conv = rec["conversations"];
    if (!conv.is_array() || conv.size() != 2 * n) throw bad(fmt::format("it does not have {} turns", n));
    for (std::size_t t = 0; t < n; ++t)
      if (row.rewrite_kept[t] == 1) {
        conv[2 * t]["value"] = row.rewritten_questions[t];
        conv[2 * t + 1]["value"] = row.rewritten_answers[t];
      }
  } else {  // the one-turn {"instruction", "output"} form
    if (n != 1 || !rec.contains("instruction") || !rec.contains("output")) throw bad("unexpected record form");
    rec["instruction"] = row.rewritten_questions[0];
    rec["output"] = row.rewritten_answers[0];
  }
  return rec.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::strict);
}

}  // namespace align2
