// Model folders as users download them, read into plain structs: which architecture,
// its hyper-parameters (transformers' defaults filled in where config.json omits
// them), where each weight lives and under which name. Torch-free.
//
// Supported folders:
//   LlamaForCausalLM                  Vicuna / LLaMA / the tiny stories260K model
//   LlavaLlamaForCausalLM             liuhaotian LLaVA-1.5: model.* LLaMA weights,
//                                     model.mm_projector.{0,2}; the vision tower named by
//                                     mm_vision_tower is a separate CLIP folder
//   LlavaForConditionalGeneration     llava-hf: transformers 4.x names (language_model.model.*,
//                                     vision_tower.vision_model.*, multi_modal_projector.linear_{1,2})
//                                     or 5.x names (model.language_model.*, model.vision_tower.*,
//                                     model.multi_modal_projector.*, lm_head.*), told apart by the tensors
//   CLIPModel                         openai/clip-vit-large-patch14-336 as downloaded (vision half used)
//   CLIPVisionModel                   a bare vision tower folder
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/image_preprocess.h"

namespace align2 {

struct LlamaConfig {
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_layers = 32;
  std::int64_t num_heads = 32;
  std::int64_t num_kv_heads = 32;      // GQA when < num_heads
  std::int64_t head_dim = 128;         // hidden_size / num_heads unless config says head_dim
  std::int64_t vocab_size = 32000;
  std::int64_t max_positions = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  std::int64_t bos_token_id = 1;
  std::int64_t eos_token_id = 2;
  std::int64_t pad_token_id = -1;      // -1: none in config
};

struct ClipVisionConfig {
  std::int64_t hidden_size = 768;
  std::int64_t intermediate_size = 3072;
  std::int64_t num_layers = 12;
  std::int64_t num_heads = 12;
  std::int64_t image_size = 224;
  std::int64_t patch_size = 32;
  std::int64_t num_channels = 3;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";   // "quick_gelu" or "gelu"
  std::vector<float> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};  // from preprocessor_config.json when present
  std::vector<float> image_std = {0.26862954f, 0.26130258f, 0.27577711f};
  std::int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

enum class ModelLayout {
  llama,             // LlamaForCausalLM
  llava_liuhaotian,  // LlavaLlamaForCausalLM
  llava_hf4,         // LlavaForConditionalGeneration, transformers 4.x tensor names
  llava_hf5,         // LlavaForConditionalGeneration, transformers 5.x tensor names
  clip_model,        // CLIPModel (vision_model.*, text_model.*)
  clip_vision,       // CLIPVisionModel (vision_model.*)
};
const char* layout_name(ModelLayout l);

enum class ProjectorType { linear, mlp2x_gelu };

struct ModelSpec {
  ModelLayout layout = ModelLayout::llama;
  std::string dir;                 // the folder given

  bool has_llm = false;
  LlamaConfig llm;

  bool has_vision = false;
  ClipVisionConfig vision;
  std::string vision_dir;          // folder holding the vision weights (== dir except liuhaotian)
  ModelLayout vision_layout = ModelLayout::clip_vision;  // layout of vision_dir's tensors
  int vision_select_layer = -2;    // hidden state used: index into [embeddings, layer 1, ..., layer L]; negative from the end
  bool vision_drop_cls = true;     // "patch" / "default" strategy: drop the CLS position
  std::string image_aspect_ratio = "pad";  // "pad" (pad to a square with the mean color, LLaVA-1.5)
                                           // or "square" (resize the short side, center crop): liuhaotian
                                           // from config image_aspect_ratio (absent: "square"); llava-hf
                                           // "square" unless preprocessor_config.json says do_pad

  bool has_projector = false;
  ProjectorType projector = ProjectorType::mlp2x_gelu;
  std::int64_t image_token_index = -200;   // id standing for <image> in token sequences

  // Checkpoint tensor names for canonical names (LLaMA / CLIPVisionTransformer names
  // without their prefix). With tie_word_embeddings, llm_weight("lm_head.weight") names
  // the embedding (tied checkpoints such as stories260K hold no lm_head.weight).
  // Calling one for a part the model lacks (has_llm false, ...) throws std::logic_error.
  //   llm_weight("embed_tokens.weight"), ("layers.3.self_attn.q_proj.weight"), ("norm.weight"), ("lm_head.weight")
  //   vision_weight("embeddings.patch_embedding.weight"), ("encoder.layers.0.mlp.fc1.bias"), ("pre_layrnorm.weight")
  //   projector_weight(0 or 1, "weight" or "bias")
  std::string llm_weight(const std::string& canonical) const;
  std::string vision_weight(const std::string& canonical) const;
  std::string projector_weight(int layer, const std::string& kind) const;
};

// Reads `dir`/config.json (and preprocessor_config.json for image mean/std/size when
// present). For liuhaotian LLaVA the vision tower folder is, in order: `vision_tower_dir`
// when not empty; mm_vision_tower when it is an existing folder; a folder named like its
// last path part (e.g. clip-vit-large-patch14-336) beside `dir` or inside it; the Hugging
// Face cache (~/.cache/huggingface/hub/models--openai--clip-vit-large-patch14-336/snapshots/*;
// $HF_HUB_CACHE, $HF_HOME/hub or $XDG_CACHE_HOME/huggingface/hub first when set; the
// snapshot named by refs/main, else the only one).
// For llava-hf the checkpoint headers in `dir` are opened to tell 4.x from 5.x names
// (so a pickle-only llava-hf folder is refused here already).
// Throws std::runtime_error naming the file and key for unknown architectures, missing
// or ill-typed keys, and unsupported settings (rope_scaling, other projector types).
ModelSpec load_model_spec(const std::string& dir, const std::string& vision_tower_dir = "");

// The preprocessing a model expects: its vision tower's image size, mean and std, and its
// aspect mode ("pad" for liuhaotian LLaVA-1.5, "square" otherwise).
ImageSpec image_spec_for(const ModelSpec& spec);

}  // namespace align2
