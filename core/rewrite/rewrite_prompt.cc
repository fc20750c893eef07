#include "core/rewrite/rewrite_prompt.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/model/chat_template.h"

namespace align2 {
namespace {

// The placeholder names of a template, in order of appearance (repeats kept).
std::vector<std::string> placeholders(const std::string& text) {
  std::vector<std::string> names;
  for (std::size_t at = 0; (at = text.find("{{", at)) != std::string::npos;) {
    std::size_t close = text.find("}}", at + 2);
    if (close == std::string::npos) break;
    names.push_back(text.substr(at + 2, close - at - 2));
    at = close + 2;
  }
  return names;
}

// One pass over `text`: each {{name}} replaced by values.at(name); inserted text is not rescanned.
std::string fill(const std::string& text, const std::map<std::string, std::string>& values) {
  std::string out;
  std::size_t at = 0;
  for (;;) {
    std::size_t open = text.find("{{", at);
    std::size_t close = open == std::string::npos ? open : text.find("}}", open + 2);
    if (close == std::string::npos) break;
    out.append(text, at, open - at);
    out += values.at(text.substr(open + 2, close - open - 2));
    at = close + 2;
  }
  out.append(text, at, std::string::npos);
  return out;
}

void check_template(const std::string& text, const std::string& source, const std::set<std::string>& allowed,
                    const std::set<std::string>& required) {
  if (text.find(kImageTag) != std::string::npos)
    throw std::runtime_error(fmt::format("{}: a prompt template must not hold \"<image>\" (the chat template adds the image)",
                                         source));
  std::set<std::string> seen;
  for (const std::string& name : placeholders(text)) {
    if (!allowed.count(name))
      throw std::runtime_error(fmt::format("{}: unknown placeholder {{{{{}}}}} (allowed: {})", source, name,
                                           fmt::join(allowed, ", ")));
    seen.insert(name);
  }
  for (const std::string& name : required)
    if (!seen.count(name)) throw std::runtime_error(fmt::format("{}: the placeholder {{{{{}}}}} is missing", source, name));
}

const std::set<std::string> kRewriteAllowed = {"history", "question", "answer"};
const std::set<std::string> kRewriteRequired = {"question", "answer"};
const std::set<std::string> kReviewAllowed = {"history", "question_a", "answer_a", "question_b", "answer_b"};
const std::set<std::string> kReviewRequired = {"question_a", "answer_a", "question_b", "answer_b"};

std::string history(const std::vector<Turn>& turns, std::size_t t) {
  if (t == 0) return "";
  std::string h = "Earlier in the conversation:\n";
  for (std::size_t k = 0; k < t; ++k)
    h += "Question: " + text_without_image(turns[k].question) + "\nAnswer: " + text_without_image(turns[k].answer) + "\n";
  return h;
}

std::string read_template(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read the prompt template", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double ratio(const std::string& now, const std::string& before) {
  std::size_t b = code_points(before);
  return b ? double(code_points(now)) / double(b) : (code_points(now) ? INFINITY : 1.0);
}

}  // namespace

RewriteTemplates load_rewrite_templates(const std::string& rewrite_path, const std::string& review_path) {
  RewriteTemplates t = default_rewrite_templates();
  if (!rewrite_path.empty()) t.rewrite = read_template(rewrite_path);
  if (!review_path.empty()) t.review = read_template(review_path);
  check_template(t.rewrite, rewrite_path.empty() ? "prompts/rewrite.txt" : rewrite_path, kRewriteAllowed,
                 kRewriteRequired);
  check_template(t.review, review_path.empty() ? "prompts/review.txt" : review_path, kReviewAllowed,
                 kReviewRequired);
  return t;
}

std::string rewrite_instruction(const RewriteTemplates& templates, const std::vector<Turn>& turns, std::size_t t) {
  return fill(templates.rewrite, {{"history", history(turns, t)},
                                  {"question", text_without_image(turns.at(t).question)},
                                  {"answer", text_without_image(turns.at(t).answer)}});
}

std::string review_instruction(const RewriteTemplates& templates, const std::vector<Turn>& turns, std::size_t t,
                               const Turn& a, const Turn& b) {
  return fill(templates.review, {{"history", history(turns, t)},
                                 {"question_a", text_without_image(a.question)},
                                 {"answer_a", text_without_image(a.answer)},
                                 {"question_b", text_without_image(b.question)},
                                 {"answer_b", text_without_image(b.answer)}});
}

const char* fallback_name(RewriteFallback reason) {
  switch (reason) {
    case RewriteFallback::none: return "";
    case RewriteFallback::too_long: return "too_long";
    case RewriteFallback::truncated: return "truncated";
    case RewriteFallback::malformed: return "malformed";
    case RewriteFallback::empty: return "empty";
    case RewriteFallback::image_tag: return "image_tag";
    case RewriteFallback::length_ratio: return "length_ratio";
  }
  return "?";
}

std::size_t code_points(const std::string& text) {
  std::size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

std::string place_image_tag(const std::string& original, const std::string& rewritten) {
  if (original.find(kImageTag) == std::string::npos) return rewritten;
  std::string stripped = python_strip(original);
  bool starts = stripped.rfind(kImageTag, 0) == 0;
  bool ends = stripped.size() >= kImageTag.size() &&
              stripped.compare(stripped.size() - kImageTag.size(), kImageTag.size(), kImageTag) == 0;
  const std::string tag(kImageTag);
  return ends && !starts ? rewritten + "\n" + tag : tag + "\n" + rewritten;
}

ParsedRewrite parse_rewrite(const std::string& reply, bool stopped_by_eos, const Turn& original,
                            const RewriteLimits& limits) {
  ParsedRewrite p;
  auto fail = [&](RewriteFallback reason, std::string detail) {
    p.reason = reason;
    p.detail = std::move(detail);
    p.turn = {};
    return p;
  };
  if (!stopped_by_eos) return fail(RewriteFallback::truncated, "the reply reached the token bound before its end");
  std::string text = python_strip(reply);
  const std::string q_label = "Question:", a_label = "\nAnswer:";
  if (text.rfind(q_label, 0) != 0) return fail(RewriteFallback::malformed, "the reply does not start with \"Question:\"");
  std::size_t a_at = text.find(a_label);
  if (a_at == std::string::npos) return fail(RewriteFallback::malformed, "the reply has no line starting with \"Answer:\"");
  std::string question = python_strip(text.substr(q_label.size(), a_at - q_label.size()));
  std::string answer = python_strip(text.substr(a_at + a_label.size()));
  if (question.find("\nQuestion:") != std::string::npos || answer.find("\nQuestion:") != std::string::npos ||
      answer.find("\nAnswer:") != std::string::npos)
    return fail(RewriteFallback::malformed, "the reply holds more than one question and answer");
  if (question.empty() || answer.empty())
    return fail(RewriteFallback::empty, question.empty() ? "the rewritten question is empty" : "the rewritten answer is empty");
  if (question.find(kImageTag) != std::string::npos || answer.find(kImageTag) != std::string::npos)
    return fail(RewriteFallback::image_tag, "the reply holds an <image> tag (it would add an image placeholder)");
  double rq = ratio(question, text_without_image(original.question)), ra = ratio(answer, python_strip(original.answer));
  for (auto [r, what] : {std::pair{rq, "question"}, std::pair{ra, "answer"}})
    if (!(r >= limits.min_ratio && r <= limits.max_ratio))
      return fail(RewriteFallback::length_ratio,
                  fmt::format("the rewritten {} is {:.2f} times the original's length (allowed {}..{})", what, r,
                              limits.min_ratio, limits.max_ratio));
  p.turn.question = place_image_tag(original.question, question);
  p.turn.answer = answer;
  return p;
}

ReviewDecision decide_review(double logp_a_order1, double logp_b_order1, double logp_a_order2, double logp_b_order2,
                             double threshold) {
  // P(first label) = 1 / (1 + exp(logp_second - logp_first)), stable for any magnitudes.
  auto p_first = [](double first, double second) { return 1.0 / (1.0 + std::exp(second - first)); };
  ReviewDecision d;
  d.p_rewrite_order1 = p_first(logp_b_order1, logp_a_order1);
  d.p_rewrite_order2 = p_first(logp_a_order2, logp_b_order2);
  d.p_rewrite = 0.5 * (d.p_rewrite_order1 + d.p_rewrite_order2);
  d.keep_rewrite = d.p_rewrite >= threshold;
  return d;
}

}  // namespace align2
