// The CLIP vision tower (ViT) in ATen as LLaVA uses it: conv patch embedding, class and
// position embeddings, pre-LayerNorm, encoder layers (pre-norm attention and MLP with
// quick_gelu), and the hidden state of the selected layer (LLaVA: -2) with the CLS
// position dropped → [N, 576, 1024] for ViT-L/14-336. Only the layers up to the
// selected one run. Numerics follow transformers' modeling_clip.py.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/model/model_config.h"
#include "core/model/safetensors.h"

namespace align2 {

class ClipVisionTower {
 public:
  // Weights come from `ckpt` under spec.vision_weight(...) names.
  ClipVisionTower(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype, at::Device device);

  // pixel_values float [N, 3, image_size, image_size] (normalised) → the selected
  // layer's hidden states [N, patches (+1 when CLS kept), hidden] in the run dtype.
  at::Tensor forward(const at::Tensor& pixel_values) const;

  const ClipVisionConfig& config() const { return cfg_; }

 private:
  struct Layer {
    at::Tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  at::Tensor layer_forward(const Layer& L, const at::Tensor& x) const;

  ClipVisionConfig cfg_;
  int layers_to_run_ = 0;  // hidden_states[k] = output after k layers (0 = embeddings)
  bool drop_cls_ = true;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor patch_w_, class_emb_, pos_emb_, pre_ln_w_, pre_ln_b_;
  std::vector<Layer> layers_;
};

}  // namespace align2
