// A reward model: the LLaVA engine + `score = Linear(hidden, 1, bias=False)` applied to
// the final-norm hidden state at the sequence's last token. Two kinds: the question RM
// f(I, Q) reads question_rm_text(questions), the answer RM g(I, Q, A) reads
// answer_rm_text(q, a) (core/reward/reward_text.h).
//
// A reward-model folder holds:
//   reward_config.json      {"format": "align2-reward-model", "version": 1, "kind": "question"|"answer",
//                            "base_model": DIR (relative to this folder or absolute), "vision_tower": DIR or "",
//                            "max_length": 2048}
//   score_head.safetensors  "score.weight" [1, hidden] (optional when the adapter holds the head)
//   adapter_config.json + adapter_model.safetensors   optional PEFT LoRA adapter on the LLM's linear layers;
//                           a head saved by PEFT's modules_to_save ("base_model.model.score.weight", as the
//                           authors' SEQ_CLS adapters have it) is taken as the score head
//   projector.safetensors   optional projector weights (the base model's projector tensor names), or
//   non_lora_trainables.safetensors  the authors' file converted as is ("base_model.model." + those names)
// score() runs one sequence per forward pass; score_batch() several (RewardScorer's `batch`).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "core/engine/llava_model.h"
#include "core/model/tokenizer.h"
#include "core/reward/reward_text.h"

namespace align2 {

struct RewardConfig {
  RewardKind kind = RewardKind::question;
  std::string base_model;    // resolved folder of the LLaVA (or LLaMA) base model
  std::string vision_tower;  // resolved CLIP folder for liuhaotian bases ("" = found as docs/models.md says)
  std::int64_t max_length = 2048;  // positions including the image's patches
};

// Reads `dir`/reward_config.json. Throws std::runtime_error naming file and key.
RewardConfig load_reward_config(const std::string& dir);

// The spec of a reward model's base model (its config files only, no weights).
ModelSpec reward_base_spec(const RewardConfig& config);
// Every folder a reward model is read from: its own `dir`, the base model's, and the vision
// tower's when that is a folder of its own (what its fingerprint must cover).
std::vector<std::string> reward_model_folders(const std::string& dir, const RewardConfig& config,
                                              const ModelSpec& base);

// One sequence to score: its text (at most one <image> tag) and the features [P, hidden] that
// replace the tag (undefined for text-only records).
struct RewardInput {
  std::string text;
  at::Tensor features;
};

struct RewardScore {
  float score = 0;
  bool truncated = false;  // the sequence was cut to max_length positions
};

class RewardModel {
 public:
  // `base_model`: overrides the config's base_model folder when not empty.
  RewardModel(const std::string& dir, at::ScalarType dtype, at::Device device, const std::string& base_model = "");

  const RewardConfig& config() const { return config_; }
  const LlavaModel& llava() const { return *llava_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const at::Tensor& score_weight() const { return score_w_; }  // float32 [hidden]
  // Every folder the model was read from: its own, the base model's, and the vision tower's
  // when that is a folder of its own (what its fingerprint must cover).
  const std::vector<std::string>& folders() const { return folders_; }

  // pixel_values float [3, S, S] of one preprocessed image → its features [P, hidden].
  at::Tensor image_features(const at::Tensor& pixel_values) const;

  // Scores `text` (with at most one <image> tag, replaced by `features` [P, hidden];
  // pass an undefined tensor for text-only records, whose texts carry no tag).
  RewardScore score(const std::string& text, const at::Tensor& features) const;
  // Scores several sequences in one forward pass: right-padded to the longest, masked, each
  // read at its own last real token. A score equals score()'s up to rounding: the padded
  // matrix shapes change the order of the sums (tested: reward_model_test).
  std::vector<RewardScore> score_batch(const std::vector<RewardInput>& inputs) const;

 private:
  // Merges the adapter's LoRA factors into the LLM; returns the adapter's score head
  // ([1, hidden] float32) when it holds one, else an undefined tensor.
  at::Tensor merge_lora(const std::string& dir);
  RewardConfig config_;
  std::unique_ptr<LlavaModel> llava_;
  std::unique_ptr<Tokenizer> tokenizer_;
  at::Tensor score_w_;  // float32 [hidden]
  std::vector<std::string> folders_;
};

// `align2 merge-lora`: writes `out_dir` as a self-contained reward-model folder: the base
// model's files with every LoRA-adapted linear weight replaced by W + scale * B @ A (and
// the adapter folder's projector, when it has one), in the base checkpoint's dtypes and
// tensor names, plus score_head.safetensors and a reward_config.json whose base_model is
// the folder itself. Its scores equal the adapter's (exactly for float32 bases).
void merge_reward_model(const std::string& base_dir, const std::string& adapter_dir, const std::string& out_dir);

}  // namespace align2
