#include "test/test_rewriter.h"

#include <algorithm>

#include "core/model/chat_template.h"
#include "core/data/record_validation.h"

namespace align2::test {

std::vector<SampleRewrite> TestRewriter::rewrite(const std::vector<const Sample*>& samples) {
  samples_rewritten += samples.size();
  largest_call = std::max(largest_call, samples.size());
  std::vector<SampleRewrite> out(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = *samples[i];
    if (!fail_image.empty() && s.image == fail_image) {
      out[i].failure = "test rewriter: image " + fail_image + " refused";
      out[i].turns.resize(s.turns.size());
      continue;
    }
    for (const Turn& turn : s.turns) {
      std::uint32_t h = std::uint32_t(std::stoul(content_key("r:" + turn.question + "\n" + turn.answer).substr(0, 6), nullptr, 16));
      TurnRewrite t;
      t.generated_tokens = 10 + h % 50;
      stats_.generated_tokens += t.generated_tokens;
      switch (h % 6) {
        case 0:
          t.reason = RewriteFallback::malformed;
          t.reply = "Once upon a time";
          t.detail = "the reply does not start with \"Question:\"";
          break;
        case 1:
          t.reason = RewriteFallback::truncated;
          t.reply = "Question: What";
          t.detail = "the reply reached the token bound before its end";
          break;
        default: {
          std::string q = turn.question;
          for (std::size_t at; (at = q.find("<image>")) != std::string::npos;) q.erase(at, 7);
          t.rewrite.question = place_image_tag(turn.question, "Rephrased: " + python_strip(q));
          t.rewrite.answer = turn.answer + " [rewritten]";
          t.reply = "Question: Rephrased: " + python_strip(q) + "\nAnswer: " + t.rewrite.answer;
          double p1 = double((h >> 4) % 100) / 100.0, p2 = double((h >> 12) % 100) / 100.0;
          t.reviewed = true;
          t.review.p_rewrite_order1 = p1;
          t.review.p_rewrite_order2 = p2;
          t.review.p_rewrite = 0.5 * (p1 + p2);
          t.review.keep_rewrite = t.review.p_rewrite >= 0.5;
          t.keep_rewrite = t.review.keep_rewrite;
        }
      }
      out[i].turns.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace align2::test
