// The reward models as the cascade's Scorer (core/reward/scorer.h): the question RM scores each
// sample's questions, the answer RM each (question, answer) turn; a sample's image is
// encoded once per stage. A sample whose image cannot be used fails with reason bad_image.
// One model is in memory at a time: the constructor reads the folders' configs only, a
// stage's first score_* call loads its model (freeing the other), and release() frees it.
#pragma once

#include <memory>
#include <string>

#include "core/model/image_preprocess.h"
#include "core/engine/reward_model.h"
#include "core/reward/scorer.h"

namespace align2 {

class RewardScorer : public Scorer {
 public:
  // image_aspect: "" = each model's image_aspect_ratio, or "pad" / "square" for both
  // (core/engine/reward_scoring.h: reward_image_spec).
  // device: where both models run; batch: sequences per forward pass (padded, masked, each
  // read at its own last token), and the samples per call the pipeline groups (group_size()).
  RewardScorer(const std::string& question_model, const std::string& answer_model, const std::string& image_root,
               at::ScalarType dtype, const std::string& image_aspect = "", at::Device device = at::Device(at::kCPU),
               std::int64_t batch = 1);

  void score_questions(const std::vector<const Sample*>& samples, float* out,
                       std::vector<ScoreFailure>* failures) override;
  void score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                     std::vector<ScoreFailure>* failures) override;
  // Both models' folders, with their base models' and vision towers' (core/model/model_fingerprint.h),
  // the image aspect mode each model's images get, and the run dtype.
  std::string fingerprint() const override { return fingerprint_; }
  // select_questions: the question model's folder and dtype; select_answers: the answer model's.
  std::string stage_fingerprint(const std::string& stage) const override;
  void release() override;
  std::size_t group_size() const override { return std::size_t(batch_); }

  // Which model is in memory now (tests).
  bool holds_question_model() const { return question_ != nullptr; }
  bool holds_answer_model() const { return answer_ != nullptr; }

 private:
  RewardModel& question_model();  // loads it (freeing the answer model) when not in memory
  RewardModel& answer_model();
  // Scores `texts` (each with its sample's features) with `model`, `batch_` sequences a forward.
  std::vector<float> score_texts(const RewardModel& model, const std::vector<RewardInput>& texts) const;

  std::string question_dir_, answer_dir_;
  at::ScalarType dtype_;
  at::Device device_;
  std::int64_t batch_;
  std::unique_ptr<RewardModel> question_, answer_;
  ImageSpec question_image_, answer_image_;  // each model's preprocessing
  std::string image_root_, fingerprint_, question_fingerprint_, answer_fingerprint_;
};

}  // namespace align2
