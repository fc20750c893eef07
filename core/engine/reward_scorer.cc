#include "core/engine/reward_scorer.h"

#include <fmt/format.h>

#include <chrono>

#include "core/model/image_preprocess.h"
#include "core/model/memory_estimate.h"
#include "core/model/model_fingerprint.h"
#include "core/data/record_validation.h"
#include "core/engine/engine_runtime.h"
#include "core/engine/reward_scoring.h"
#include "core/reward/reward_text.h"

namespace align2 {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

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
                           const std::string& image_root, at::ScalarType dtype, const std::string& image_aspect,
                           at::Device device, std::int64_t batch)
    : question_dir_(question_model),
      answer_dir_(answer_model),
      dtype_(dtype),
      device_(device),
      batch_(batch),
      image_root_(image_root) {
  if (batch < 1) throw std::invalid_argument(fmt::format("score_batch {}: must be at least 1", batch));
  const RewardConfig question = load_reward_config(question_model), answer = load_reward_config(answer_model);
  if (question.kind != RewardKind::question)
    throw std::runtime_error(fmt::format("{}: question_model is an answer reward model", question_model));
  if (answer.kind != RewardKind::answer)
    throw std::runtime_error(fmt::format("{}: answer_model is a question reward model", answer_model));
  const ModelSpec question_base = reward_base_spec(question), answer_base = reward_base_spec(answer);
  question_image_ = reward_image_spec(question_base, image_aspect);
  answer_image_ = reward_image_spec(answer_base, image_aspect);
  // Each stage holds its own model only: each must fit this rank's memory by itself.
  const MemoryBudget budget = memory_budget(device);
  const std::size_t run_bytes = std::size_t(at::elementSize(dtype));
  require_memory(estimate_model_memory(question_base, run_bytes, question.max_length, batch, false), budget,
                 "the question reward model " + question_model);
  require_memory(estimate_model_memory(answer_base, run_bytes, answer.max_length, batch, false), budget,
                 "the answer reward model " + answer_model);
  // What changes the scores' arithmetic: the dtype, the device kind and the forward's batch.
  const std::string arithmetic = dtype_name(dtype) + (device.is_cuda() ? "+cuda" : "") +
                                (batch > 1 ? fmt::format("+batch{}", batch) : std::string());
  auto folders = [](const std::string& dir, const RewardConfig& config, const ModelSpec& base) {
    std::string text;  // its folder's, its base's and its vision tower's fingerprints
    for (const std::string& folder : reward_model_folders(dir, config, base)) text += model_folder_fingerprint(folder) + "+";
    return text;
  };
  question_fingerprint_ = "question:" + folders(question_model, question, question_base) +
                          aspect_mode_name(question_image_.aspect) + "+" + arithmetic;
  answer_fingerprint_ = "answer:" + folders(answer_model, answer, answer_base) + aspect_mode_name(answer_image_.aspect) +
                        "+" + arithmetic;
  fingerprint_ = question_fingerprint_ + "+" + answer_fingerprint_;
}

RewardModel& RewardScorer::question_model() {
  if (!question_) {
    answer_.reset();  // first free, then load: one model's memory at a time
    return_free_memory();
    const auto start = std::chrono::steady_clock::now();
    question_ = std::make_unique<RewardModel>(question_dir_, dtype_, device_);
    report_loaded("the question reward model " + question_dir_, seconds_since(start), device_);
  }
  return *question_;
}

RewardModel& RewardScorer::answer_model() {
  if (!answer_) {
    question_.reset();
    return_free_memory();
    const auto start = std::chrono::steady_clock::now();
    answer_ = std::make_unique<RewardModel>(answer_dir_, dtype_, device_);
    report_loaded("the answer reward model " + answer_dir_, seconds_since(start), device_);
  }
  return *answer_;
}

void RewardScorer::release() {
  question_.reset();
  answer_.reset();
  return_free_memory();
}

std::vector<float> RewardScorer::score_texts(const RewardModel& model, const std::vector<RewardInput>& texts) const {
  std::vector<float> scores;
  for (std::size_t b = 0; b < texts.size(); b += std::size_t(batch_)) {
    const std::vector<RewardInput> part(texts.begin() + std::ptrdiff_t(b),
                                        texts.begin() + std::ptrdiff_t(std::min(texts.size(), b + std::size_t(batch_))));
    for (const RewardScore& s : model.score_batch(part)) scores.push_back(s.score);
  }
  return scores;
}

void RewardScorer::score_questions(const std::vector<const Sample*>& samples, float* out,
                                   std::vector<ScoreFailure>* failures) {
  RewardModel& model = question_model();
  std::vector<RewardInput> texts;  // one per sample whose image could be used
  std::vector<std::size_t> owner;  // texts[k] belongs to samples[owner[k]]
  for (std::size_t i = 0; i < samples.size(); ++i) {
    try {
      texts.push_back({reward_text(RewardKind::question, *samples[i], 0),
                       sample_features(model, *samples[i], image_root_, question_image_)});
      owner.push_back(i);
    } catch (const ImageError& e) {
      failures->push_back(failure(i, *samples[i], e));
    }
  }
  const std::vector<float> scores = score_texts(model, texts);
  for (std::size_t k = 0; k < owner.size(); ++k) out[owner[k]] = scores[k];
}

void RewardScorer::score_answers(const std::vector<const Sample*>& samples, std::vector<std::vector<float>>* out,
                                 std::vector<ScoreFailure>* failures) {
  RewardModel& model = answer_model();
  out->assign(samples.size(), {});
  std::vector<RewardInput> texts;  // every turn of the samples whose image could be used, in order
  std::vector<std::size_t> owner;  // texts[k] is a turn of samples[owner[k]]
  for (std::size_t i = 0; i < samples.size(); ++i) {
    try {
      at::Tensor features = sample_features(model, *samples[i], image_root_, answer_image_);
      for (std::size_t t = 0; t < samples[i]->turns.size(); ++t) {
        texts.push_back({reward_text(RewardKind::answer, *samples[i], t), features});
        owner.push_back(i);
      }
    } catch (const ImageError& e) {
      failures->push_back(failure(i, *samples[i], e));
    }
  }
  const std::vector<float> scores = score_texts(model, texts);
  for (std::size_t k = 0; k < owner.size(); ++k) (*out)[owner[k]].push_back(scores[k]);
}

}  // namespace align2
