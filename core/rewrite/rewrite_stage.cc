#include "core/rewrite/rewrite_stage.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/util/byte_io.h"
#include "core/data/record_validation.h"
#include "core/data/record_text.h"

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

namespace {


// The one-turn {"instruction", "output"} form as LLaVA's conversation form: id, image and
// conversations first, then every other field in its order; "<image>\n" in front of the
// question when the record has an image and its instruction holds no tag (where LLaVA's
// training puts it: preprocess_multimodal).
nlohmann::ordered_json as_conversation(const nlohmann::ordered_json& rec) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const char* k : {"id", "image"})
    if (rec.contains(k)) out[k] = rec[k];
  std::string question = rec["instruction"].get<std::string>();
  const bool has_image = rec.contains("image") && !rec["image"].is_null();
  if (has_image && count_image_tags(question) == 0) question = with_image_line(question);
  out["conversations"] = {{{"from", "human"}, {"value", question}}, {{"from", "gpt"}, {"value", rec["output"]}}};
  for (const auto& [k, v] : rec.items())
    if (k != "id" && k != "image" && k != "instruction" && k != "output") out[k] = v;
  return out;
}

}  // namespace

std::string curated_record(const std::string& record, const ShardRow& row) {
  bool any = false;
  for (std::int8_t k : row.rewrite_kept) any |= k == 1;
  nlohmann::ordered_json rec = nlohmann::ordered_json::parse(record, nullptr, false);
  auto bad = [&](const std::string& what) {
    return std::runtime_error(fmt::format("record {} (key {}): cannot write it to curated.json: {}", row.id, row.key, what));
  };
  if (rec.is_discarded() || !rec.is_object()) throw bad("the record is not a JSON object");
  const bool instruction_form = !rec.contains("conversations") && rec.contains("instruction") &&
                                rec.contains("output") && rec["instruction"].is_string() && rec["output"].is_string();
  if (!any && !instruction_form) return record;  // no rewrite kept: byte for byte as in the pool
  if (instruction_form) rec = as_conversation(rec);
  if (!rec.contains("conversations"))
    throw bad("it has neither \"conversations\" nor \"instruction\" and \"output\"");
  auto& conv = rec["conversations"];
  const std::size_t n = row.rewrite_kept.size();
  if (n && (!conv.is_array() || conv.size() != 2 * n)) throw bad(fmt::format("it does not have {} turns", n));
  for (std::size_t t = 0; t < n; ++t)
    if (row.rewrite_kept[t] == 1) {
      // A rewrite keeps its original's tag placement (core/rewrite/rewrite_prompt.h); an instruction
      // without a tag got its "<image>\n" above, which the rewrite takes over.
      std::string question = row.rewritten_questions[t];
      const auto& before = conv[2 * t]["value"];
      if (before.is_string() && count_image_tags(before.get<std::string>()) == 1 && count_image_tags(question) == 0)
        question = with_image_line(question);
      conv[2 * t]["value"] = question;
      conv[2 * t + 1]["value"] = row.rewritten_answers[t];
    }
  return rec.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::strict);
}

}  // namespace align2
