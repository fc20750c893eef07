// LLM characteristic alignment, the engine side (the Rewriter of core/rewrite/rewriter.h): the inner LLM rewrites every (question,
// answer) turn of a sample in its own words, then reviews original against rewrite in both
// orders and keeps the rewrite when its mean probability of being better reaches the
// threshold (core/rewrite/rewrite_prompt.h has the prompts, parsing and decision rule).
//
// The model is a LLaVA folder (the image goes into the prompt as LLaVA does it) or a plain
// LLaMA/Vicuna folder (text only: the image is left out). Generation is batched with the KV
// cache; requests are sorted by prompt length before batching (length buckets). Greedy by
// default; with a temperature, each turn's draws are seeded by (the sample key, the turn),
// so any rank and any batch give the same text. This header includes ATen.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/model/chat_template.h"
#include "core/model/model_config.h"
#include "core/pipeline/job_config.h"
#include "core/rewrite/rewriter.h"

namespace align2 {

class LlavaModel;
class Tokenizer;

// The rewriter's settings, made by rewrite_settings(RewriteConfig) below: the job config's
// defaults (core/pipeline/job_config.h) are theirs.
struct RewriteSettings {
  TemplateKind chat_template{};   // how instructions are wrapped for the model
  std::int64_t max_new_tokens{};  // bound on each rewrite's length, tokens
  double temperature{};           // 0 = greedy
  double top_p{};
  std::string label_a, label_b;   // the review's two choice labels
  double threshold{};             // keep the rewrite when P(rewrite better) >= threshold
  RewriteLimits limits;
  std::uint64_t batch_size{};     // sequences per generation / review batch, at most
  std::uint64_t batch_tokens{};   // prompt tokens per batch, at most (0 = no bound)
};

class LlmRewriter : public Rewriter {
 public:
  // `model_dir`: a LLaVA or LLaMA folder (config.json, safetensors, tokenizer.model).
  LlmRewriter(const std::string& model_dir, const std::string& image_root, at::ScalarType dtype,
           RewriteSettings settings, RewriteTemplates templates, at::Device device = at::Device(at::kCPU));
  ~LlmRewriter() override;

  // One result per sample, in order. A sample whose image cannot be used gets `failure`.
  std::vector<SampleRewrite> rewrite(const std::vector<const Sample*>& samples) override;

  // The full prompt text (chat template applied) that asks for a rewrite of turn t, and the
  // one for a review; exposed for tests and docs.
  std::string rewrite_prompt(const Sample& sample, std::size_t t) const;
  std::string review_prompt(const Sample& sample, std::size_t t, const Turn& a, const Turn& b) const;

  // Natural-log probabilities of the labels A and B as the reply to each prompt text
  // (teacher-forced over the labels' tokens); [prompts.size()][2].
  std::vector<std::array<double, 2>> label_logprobs(const std::vector<std::string>& prompts,
                                                    const at::Tensor& image_features);

  const RewriteStats& stats() const override { return stats_; }
  std::string fingerprint() const override { return fingerprint_; }
  void release() override;
  bool holds_model() const { return model_ != nullptr; }  // tests
  bool uses_images() const;

 private:
  at::Tensor features(const Sample& sample) const;  // [P, hidden] or undefined (text only)
  at::Tensor embed_prompt(const std::string& prompt, const at::Tensor& features) const;  // [T, hidden]
  std::int64_t prompt_tokens(const std::string& prompt, const at::Tensor& features) const;  // T of embed_prompt

  LlavaModel& model() const;  // loaded on first use (rewrite, label_logprobs), freed by release()

  ModelSpec spec_;
  at::ScalarType dtype_;
  at::Device device_ = at::Device(at::kCPU);
  mutable std::unique_ptr<LlavaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string image_root_;
  RewriteSettings settings_;
  RewriteTemplates templates_;
  std::vector<std::int64_t> label_ids_[2];
  RewriteStats stats_;
  std::string fingerprint_;
};

// The job config's side of stage 3 (core/engine/engine_factory.h makes the rewriter):
// the settings its rewrite keys give (no token bound: a group is one call, whatever its lengths).
RewriteSettings rewrite_settings(const RewriteConfig& config);
// The model folder that rewrites: rewrite_model, else the base model of the question reward
// model (question_model's reward_config.json). Throws std::runtime_error when it names neither.
std::string rewrite_model_dir(const RewriteConfig& rewrite, const ModelsConfig& models);

}  // namespace align2
