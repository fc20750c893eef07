#include "core/reward_scorer.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/image_preprocess.h"
#include "core/record_validation.h"
#include "core/reward_scoring.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

// Small files are hashed whole; large ones (weights) by name and size.
std::string folder_fingerprint(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string text;
  for (const fs::path& f : files) {
    std::uintmax_t size = fs::file_size(f);
    text += f.filename().string() + "\n" + std::to_string(size) + "\n";
    if (size <= (1u << 20)) {
      std::ifstream in(f, std::ios::binary);
      std::ostringstream s;
      s << in.rdbuf();
      text += content_key(s.str()) + "\n";
    }
  }
  return content_key(text);
}

ScoreFailure failure(std::size_t i, const Sample& s, const ImageError& e) {
  return {i, Reason::bad_image,
          fmt::format("pool record {} (id \"{}\"): {} [{}]", s.index, s.id, e.what(), e.reason_code)};
}

}  // namespace

RewardScorer::RewardScorer(const std::string& question_model, const std::string& answer_model,
                           const std::string& image_root, at::ScalarType dtype)
    : question_(std::make_unique<RewardModel>(question_model, dtype, at::Device(at::kCPU))),
      answer_(std::make_unique<RewardModel>(answer_model, dtype, at::Device(at::kCPU))),
      image_root_(image_root) {
  if (question_->config().kind != RewardKind::question)
    throw std::runtime_error(fmt::format("{}: question_model is an answer reward model", question_model));
  if (answer_->config().kind != RewardKind::answer)
    throw std::runtime_error(fmt::format("{}: answer_model is a question reward model", answer_model));
  fingerprint_ = folder_fingerprint(question_model) + "+" + folder_fingerprint(answer_model) + "+" +
                 (dtype == at::kBFloat16 ? "bf16" : "f32");
}

void RewardScorer::score_questions(const std::vector<const Sample*>& samples, float* out,
                                   std::vector<ScoreFailure>* failures) {
  for (std::size_t i = 0; i < samples.size(); ++i) {
    try {
      at::Tensor features = sample_features(*question_, *samples[i], image_root_);
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
      at::Tensor features = sample_features(*answer_, *samples[i], image_root_);
      for (std::size_t t = 0; t < samples[i]->turns.size(); ++t)
        (*out)[i].push_back(answer_->score(reward_text(RewardKind::answer, *samples[i], t), features).score);
    } catch (const ImageError& e) {
      (*out)[i].clear();
      failures->push_back(failure(i, *samples[i], e));
    }
  }
}

}  // namespace align2
