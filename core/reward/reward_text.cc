#include "core/reward/reward_text.h"

#include <stdexcept>

#include "core/data/record_text.h"

namespace align2 {

const char* reward_kind_name(RewardKind k) { return k == RewardKind::question ? "question" : "answer"; }

RewardKind reward_kind_from_name(const std::string& name) {
  if (name == "question") return RewardKind::question;
  if (name == "answer") return RewardKind::answer;
  throw std::invalid_argument("reward model kind \"" + name + "\": expected question or answer");
}

std::string question_rm_text(const std::vector<std::string>& questions) {
  std::string text = with_image_line("");
  for (std::size_t i = 0; i < questions.size(); ++i) {
    if (i) text += '\n';
    text += text_without_image(questions[i]);
  }
  return python_strip(text);  // their final prompt.strip()
}

std::string answer_rm_text(const std::string& question, const std::string& answer) {
  return python_strip(with_image_line("Question: " + text_without_image(question) + "\nAnswer: " + text_without_image(answer)));
}

std::string reward_input(const std::string& text, bool has_image) {
  static const std::string kLine = std::string(kImageTag) + "\n";
  if (has_image) return text;
  if (text.compare(0, kLine.size(), kLine) == 0) return text.substr(kLine.size());
  if (text == kImageTag) return "";  // an empty question set
  return text;
}

std::string reward_text(RewardKind kind, const Sample& s, std::size_t turn) {
  std::string text;
  if (kind == RewardKind::question) {
    std::vector<std::string> questions;
    for (const Turn& t : s.turns) questions.push_back(t.question);
    text = question_rm_text(questions);
  } else {
    text = answer_rm_text(s.turns.at(turn).question, s.turns.at(turn).answer);
  }
  return reward_input(text, !s.image.empty());
}

}  // namespace align2
