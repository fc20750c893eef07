// A deterministic Scorer for tests (a test double: product code never uses it).
// Scores are pure functions of the sample's text: a hash mapped to [0, 1) plus a
// small length term, so that ties are rare but possible to construct.
#pragma once

#include <cstdint>
#include <vector>

#include "core/reward/scorer.h"

namespace align2::test {

class TestScorer : public Scorer {
 public:
  void score_questions(const std::vector<const Sample*>& samples, float* out,
                       std::vector<ScoreFailure>* failures) override;
  void score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                     std::vector<ScoreFailure>* failures) override;
  std::string fingerprint() const override { return model; }
  void release() override { ++releases; }
  std::size_t group_size() const override { return group; }

  std::size_t calls = 0;          // number of score_* calls
  std::size_t largest_batch = 0;  // most samples in one call
  std::size_t samples_scored = 0;  // samples passed to score_* in all calls
  std::string model = "test-scorer-v1";  // its fingerprint: change it to play a changed model
  std::string fail_image;         // samples with this image fail (bad_image), to test that path
  std::size_t releases = 0;       // release() calls: one per selection stage
  std::size_t group = 1;          // group_size(): above 1 it plays a scorer whose forwards batch
  std::vector<std::vector<std::uint64_t>> question_calls;  // pool indices of each score_questions call
};

}  // namespace align2::test
