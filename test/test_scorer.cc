#include "test/test_scorer.h"

#include <algorithm>

#include "core/data/record_validation.h"

namespace align2::test {
namespace {

// First 6 hex digits of the content key → [0, 1).
float unit_hash(const std::string& text) {
  std::string key = content_key(text);
  return float(std::stoul(key.substr(0, 6), nullptr, 16)) / float(1 << 24);
}

}  // namespace

void TestScorer::score_questions(const std::vector<const Sample*>& samples, float* out,
                                 std::vector<ScoreFailure>* failures) {
  ++calls;
  largest_batch = std::max(largest_batch, samples.size());
  samples_scored += samples.size();
  question_calls.emplace_back();
  for (const Sample* s : samples) question_calls.back().push_back(s->index);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    if (!fail_image.empty() && samples[i]->image == fail_image) {
      failures->push_back({i, Reason::bad_image, "test scorer: image " + fail_image + " refused"});
      continue;
    }
    std::string questions;
    for (const Turn& t : samples[i]->turns) questions += t.question + "\n";
    out[i] = unit_hash("q:" + samples[i]->image + "\n" + questions);
  }
}

void TestScorer::score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                               std::vector<ScoreFailure>* failures) {
  ++calls;
  largest_batch = std::max(largest_batch, samples.size());
  samples_scored += samples.size();
  out->assign(samples.size(), {});
  for (std::size_t i = 0; i < samples.size(); ++i)
    for (const Turn& t : samples[i]->turns)
      (*out)[i].push_back(unit_hash("a:" + t.question + "\n" + t.answer) + float(t.answer.size() % 7) * 0.01f);
}

}  // namespace align2::test
