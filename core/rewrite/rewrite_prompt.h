// LLM characteristic alignment, the text side (torch-free): the prompts that ask the inner
// LLM to rewrite a (question, answer) turn and to review original against rewrite, the
// strict parsing of its rewrite, and the review decision from label probabilities.
//
// Templates are plain text files with placeholders, filled in one pass (text inserted from
// a record is never scanned for placeholders again):
//   rewrite  {{history}} {{question}} {{answer}}                       (question, answer required)
//   review   {{history}} {{question_a}} {{answer_a}} {{question_b}} {{answer_b}}  (all four required)
// {{history}} is "" for a conversation's first turn, else "Earlier in the conversation:\n"
// then "Question: q\nAnswer: a\n" per earlier turn (original texts). Every "<image>" is
// removed from inserted text and templates may not hold one (the image reaches the model as the chat template's
// "<image>\n" prefix). The defaults are prompts/rewrite.txt and prompts/review.txt,
// compiled into the program; docs/rewrite.md explains them.
//
// The rewrite reply must read "Question: Q'\nAnswer: A'" (surrounding whitespace aside);
// anything else keeps the original turn with a reason (RewriteFallback).
#pragma once

#include <string>
#include <vector>

#include "core/data/sample.h"

namespace align2 {

struct RewriteTemplates {
  std::string rewrite;
  std::string review;
};

// The shipped prompts/rewrite.txt and prompts/review.txt.
RewriteTemplates default_rewrite_templates();

// Reads the given files ("" = the shipped default of that kind) and checks their
// placeholders; throws std::runtime_error naming the file for an unreadable file, an unknown
// {{placeholder}} or a required one missing.
RewriteTemplates load_rewrite_templates(const std::string& rewrite_path, const std::string& review_path);

// The instruction (user message) that asks for a rewrite of turns[t].
std::string rewrite_instruction(const RewriteTemplates& templates, const std::vector<Turn>& turns, std::size_t t);

// The instruction that asks which of versions `a` and `b` of turns[t] is better.
std::string review_instruction(const RewriteTemplates& templates, const std::vector<Turn>& turns, std::size_t t,
                               const Turn& a, const Turn& b);

// Why a rewrite was not used. `none` = the rewrite was well-formed (the review decides).
// too_long: the rewrite or review prompt leaves no room in the model's context.
enum class RewriteFallback { none, too_long, truncated, malformed, empty, image_tag, length_ratio };
const char* fallback_name(RewriteFallback reason);  // "", "truncated", "malformed", ...

struct ParsedRewrite {
  RewriteFallback reason = RewriteFallback::none;
  Turn turn;            // the rewrite, with the original's <image> placement restored (when reason == none)
  std::string detail;   // what was wrong, for people (when reason != none)
};

struct RewriteLimits {
  double min_ratio = 0.3;  // rewritten / original length (Unicode code points), each of Q and A
  double max_ratio = 3.0;
};

// Parses the generated reply (decoded text, EOS excluded) of a rewrite of `original`.
// `stopped_by_eos`: false when generation hit its token bound (the reply is cut: truncated).
ParsedRewrite parse_rewrite(const std::string& reply, bool stopped_by_eos, const Turn& original,
                            const RewriteLimits& limits);

// `rewritten` with "<image>" placed as in `original`: in front ("<image>\n" + q) when the
// original question starts with the tag, at the end (q + "\n<image>") when it ends with it,
// nowhere when it has none. A tag elsewhere in the original counts as in front.
std::string place_image_tag(const std::string& original, const std::string& rewritten);

// The review of one turn. Order 1 shows (A = original, B = rewrite), order 2 (A = rewrite,
// B = original); each order's label probabilities are renormalised over the two labels.
struct ReviewDecision {
  double p_rewrite_order1 = 0.5;  // P(B | order 1)
  double p_rewrite_order2 = 0.5;  // P(A | order 2)
  double p_rewrite = 0.5;         // their mean: the rewrite's probability of being better
  bool keep_rewrite = false;      // p_rewrite >= threshold
};

// Log-probabilities (natural log) of label A and label B as the reply, in each order.
ReviewDecision decide_review(double logp_a_order1, double logp_b_order1, double logp_a_order2,
                             double logp_b_order2, double threshold);

// Unicode code points of UTF-8 text (bytes that do not start a code point are not counted).
std::size_t code_points(const std::string& text);

}  // namespace align2
