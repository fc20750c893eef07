// LLaVA in ATen: CLIP vision tower → projector (linear or mlp2x_gelu) → LLaMA, with the
// LLaVA splice (each image placeholder token replaced by the image's projected patch
// embeddings). Also serves a plain LLaMA folder (text only).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "core/engine/clip_vision.h"
#include "core/engine/llama_model.h"
#include "core/model/model_config.h"

namespace align2 {

// The multimodal projector: linear, or mlp2x_gelu (linear, exact GELU, linear).
class Projector {
 public:
  // Weights under spec.projector_weight(...) names, each with `prefix` in front
  // (e.g. "base_model.model." in the authors' non_lora_trainables files).
  Projector(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype, at::Device device,
            const std::string& prefix = "");
  // vision hidden [N, P, vision hidden] → image features [N, P, LLM hidden] in `dtype`.
  at::Tensor forward(const at::Tensor& vision_hidden) const;

  // Converts the weights (and the output) to `dtype`: training keeps float32 master weights
  // even when the rest of the model runs in bfloat16.
  void to(at::ScalarType dtype);

  // The weights with their checkpoint names (spec.projector_weight), for training and saving.
  std::vector<std::pair<std::string, at::Tensor*>> parameters(const ModelSpec& spec);

 private:
  at::ScalarType dtype_;
  at::Tensor w0_, b0_, w1_, b1_;  // w1_ undefined for a linear projector
};

class LlavaModel {
 public:
  // Loads every weight of `spec` (the LLM from spec.dir, the vision tower from
  // spec.vision_dir) in `dtype` on `device`.
  LlavaModel(const ModelSpec& spec, at::ScalarType dtype, at::Device device);

  const ModelSpec& spec() const { return spec_; }
  bool has_vision() const { return vision_ != nullptr; }
  const LlamaModel& llm() const { return *llm_; }
  LlamaModel& llm() { return *llm_; }  // for LoRA merging and training
  Projector* projector() { return projector_.get(); }  // null without a projector
  // Loads the projector's weights (under the spec's projector names) from `ckpt` instead.
  void replace_projector(const Checkpoint& ckpt, const std::string& prefix = "");
  const ClipVisionTower& vision() const;

  // pixel_values [N, 3, S, S] → selected vision hidden states [N, P, vision hidden].
  at::Tensor encode_images(const at::Tensor& pixel_values) const;
  // vision hidden [N, P, vision hidden] → image features [N, P, LLM hidden].
  at::Tensor project(const at::Tensor& vision_hidden) const;

  // One sequence's input embeddings [T', hidden]: token ids in which each occurrence of
  // spec.image_token_index is replaced, in order, by the rows of images[k] ([P, hidden]).
  // Throws std::invalid_argument when the counts of placeholders and images differ.
  at::Tensor splice(const std::vector<std::int64_t>& ids, const std::vector<at::Tensor>& images) const;

  // Final-norm hidden states at each sequence's last position, for sequences of
  // embeddings [T_i, hidden] run as one right-padded batch → [B, hidden].
  at::Tensor last_hidden(const std::vector<at::Tensor>& sequences) const;

 private:
  ModelSpec spec_;
  std::unique_ptr<LlamaModel> llm_;
  std::unique_ptr<ClipVisionTower> vision_;
  std::unique_ptr<Projector> projector_;
};

}  // namespace align2
