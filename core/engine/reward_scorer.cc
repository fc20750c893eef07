#include "core/engine/reward_scorer.h"

#include <fmt/format.h>

#include "core/model/image_preprocess.h"
#include "core/model/model_fingerprint.h"
#include "core/data/record_validation.h"
#include "core/engine/reward_scoring.h"
#include "core/reward/reward_text.h"

namespace align2 {
namespace {

ScoreFailure failure(std::size_t i, const Sample& s, const ImageError& e) {
  return {i, Reason::bad_image,
          fmt::format("pool record {} (id \"{}\"): {} [{}]", s.index, s.id, e.what(), e.reason_code)};
}

}  // namespace

std::string RewardScorer::stage_fingerprint(const std::string& stage) const {
  if (stage == "select_questions") return question_fingerprint_;
  if (stage == "select_answers") return answer_fingerprint_;
  throw std::invalid_argument("RewardScorer::stage_fingerprint: unknown stage " + stage);
}

RewardScorer::RewardScorer(const std::string& question_model, const std::string& answer_model,
                           const std::string& image_root, at::ScalarType dtype, const std::string& image_aspect)
    : question_(std::make_unique<RewardModel>(question_model, dtype, at::Device(at::kCPU))),
      answer_(std::make_unique<RewardModel>(answer_model, dtype, at::Device(at::kCPU))),
      question_image_(reward_image_spec(*question_, image_aspect)),
      answer_image_(reward_image_spec(*answer_, image_aspect)),
      image_root_(image_root) {
  if (question_->config().kind != RewardKind::question)
    throw std::runtime_error(fmt::format("{}: question_model is an answer reward model", question_model));
  if (answer_->config().kind != RewardKind::answer)
    throw std::runtime_error(fmt::format("{}: answer_model is a question reward model", answer_model));
  const std::string run_dtype = dtype == at::kBFloat16 ? "bf16" : "f32";
  auto folders = [](const RewardModel& m) {  // the reward model's folder, its base's, its vision tower's
    std::string text;
    for (const std::string& dir : m.folders()) text += model_folder_fingerprint(dir) + "+";
    return text;
  };
  question_fingerprint_ = "question:" + folders(*question_) + aspect_mode_name(question_image_.aspect) + "+" + run_dtype;
  answer_fingerprint_ = "answer:" + folders(*answer_) + aspect_mode_name(answer_image_.aspect) + "+" + run_dtype;
  fingerprint_ = question_fingerprint_ + "+" + answer_fingerprint_;
}

void RewardScorer::score_questions(const std::vector<const Sample*>& samples, float* out,
                                   std::vector<ScoreFailure>* failures) {
  for (std::size_t i = 0; i < samples.size(); ++i) {
    try {
      at::Tensor features = sample_features(*question_, *samples[i], image_root_, question_image_);
      out[i] = question_->score(reward_text(RewardKind::question, *samples[i], 0), features).score;
    } catch (const ImageError& e) {
      failures->push_back(failure(i, *samples[i], e));
    }
  }
}

void RewardScorer::score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                                 std::vector<ScoreFailure>* failures) {
  out->assign(samples.size(), {});
  for (std::size_t i = 0; i < samples.size(); ++i) {
    try {
      at::Tensor features = sample_features(*answer_, *samples[i], image_root_, answer_image_);
      for (std::size_t t = 0; t < samples[i]->turns.size(); ++t)
        (*out)[i].push_back(answer_->score(reward_text(RewardKind::answer, *samples[i], t), features).score);
    } catch (const ImageError& e) {
      (*out)[i].clear();
      failures->push_back(failure(i, *samples[i], e));
    }
  }
}

}  // namespace align2
