// What the two reward models read: the kinds, and the texts built from a sample, exactly as
// the authors' preprocess_qa builds them (docs/reward-models-reference.md §3). Scoring,
// training and preference pairs all take their texts from here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/data/sample.h"

namespace align2 {

enum class RewardKind { question, answer };  // f(I, Q) and g(I, Q, A)
const char* reward_kind_name(RewardKind k);  // "question", "answer"
// Inverse of reward_kind_name; throws std::invalid_argument for other names.
RewardKind reward_kind_from_name(const std::string& name);

// The text the question reward model reads for a question set:
// "<image>\n" + "\n".join(questions), each question with every "<image>" removed and
// stripped (Python's str.strip()), the whole stripped.
std::string question_rm_text(const std::vector<std::string>& questions);
// The text the answer reward model reads: "<image>\nQuestion: {q}\nAnswer: {a}", q and a
// with every "<image>" removed and stripped, the whole stripped.
std::string answer_rm_text(const std::string& question, const std::string& answer);

// One of the texts above as a model reads it: unchanged with an image; without its
// "<image>\n" line for a text-only sample ("" for "<image>" alone: an empty question set).
std::string reward_input(const std::string& text, bool has_image);

// The text the reward model of `kind` reads for turn `turn` (answer RM) or for all the
// sample's questions (question RM, `turn` ignored), as reward_input gives it.
std::string reward_text(RewardKind kind, const Sample& sample, std::size_t turn);

}  // namespace align2
