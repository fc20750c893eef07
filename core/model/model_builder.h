// A LLaVA model folder built from a trained LLaMA: the LLaMA's weights and tokenizer as
// they are, plus a CLIP ViT vision tower and an mlp2x_gelu projector, both freshly
// initialised from a seed. The result is the starting point LLaVA's own training begins
// from (a pretrained LLM, an untrained projector) with an untrained vision tower in place
// of a downloaded CLIP: small enough to train reward models on a laptop, e.g. from
// Karpathy's tinyllamas stories260K for align2's demo. Torch-free.
//
// Written layout (liuhaotian, docs/models.md; load_model_spec reads it back):
//   OUT/config.json                 the LLaMA's config.json with architectures
//                                   ["LlavaLlamaForCausalLM"], model_type "llava_llama" and the
//                                   mm_* keys (mm_vision_tower "clip-vision", mm_projector_type
//                                   "mlp2x_gelu", select layer -2, feature "patch",
//                                   image_aspect_ratio "pad")
//   OUT/model.safetensors           every tensor of the LLaMA (names, dtypes and bytes unchanged)
//                                   + model.mm_projector.{0,2}.{weight,bias} (F32)
//   OUT/tokenizer.model             copied (and tokenizer_config.json / special_tokens_map.json
//                                   when the LLaMA folder has them)
//   OUT/clip-vision/config.json     CLIPVisionModel, quick_gelu
//   OUT/clip-vision/preprocessor_config.json   CLIP mean/std, resize + crop to image_size
//   OUT/clip-vision/model.safetensors          vision_model.* (F32)
// The vision tower is found as "a folder named like mm_vision_tower inside the LLaVA
// folder" (model_config.h), so the folder can be moved as a whole.
//
// Initialisation (every draw uniform, from a splitmix64 stream per tensor seeded by the
// seed and the tensor's name, so the bytes are the same on every platform and do not
// depend on the order tensors are made in): the vision tower as transformers'
// CLIPPreTrainedModel._init_weights (initializer_factor 1, initializer_range 0.02), each
// normal N(0, s) replaced by the uniform of the same standard deviation, U(-s√3, s√3);
// LayerNorms weight 1, bias 0; linear biases 0. The projector as torch.nn.Linear's default,
// weights and biases U(-1/√in, 1/√in).
//
// The LLaMA's tensors are held in memory once while model.safetensors is written (fine for
// the tiny models this is for; a 7B LLaMA needs its size in RAM).
#pragma once

#include <cstdint>
#include <string>

namespace align2 {

struct LlavaBuildOptions {
  std::string llm_dir;     // a LlamaForCausalLM folder: config.json, safetensors weights, tokenizer.model
  std::string output_dir;  // must not exist or be empty
  // The CLIP ViT vision tower.
  std::int64_t vision_layers = 2;
  std::int64_t vision_hidden = 64;
  std::int64_t vision_intermediate = 0;  // 0 = 4 × vision_hidden
  std::int64_t vision_heads = 4;
  std::int64_t image_size = 224;
  std::int64_t patch_size = 32;          // image tokens per image: (image_size / patch_size)²
  std::uint64_t seed = 0;
  std::int64_t max_positions = 0;        // the LLaVA's max_position_embeddings; 0 = the LLaMA's
};

struct LlavaBuildResult {
  std::string llava_dir;               // = output_dir
  std::string vision_dir;              // output_dir/clip-vision
  std::int64_t image_tokens = 0;       // positions one image takes in the LLM's sequence
  std::int64_t llm_max_positions = 0;  // the LLaMA's max_position_embeddings
  std::int64_t llm_tensors = 0;        // tensors copied from the LLaMA
  std::int64_t new_parameters = 0;     // parameters of the vision tower and the projector
};

// Throws std::invalid_argument for options that cannot make a model (a size below 1,
// image_size not a multiple of patch_size, vision_hidden not a multiple of vision_heads,
// image tokens above half the LLaMA's positions), std::runtime_error naming the file for
// an LLM folder that is not a LLaMA or lacks tokenizer.model, a non-empty output folder,
// or a write error.
LlavaBuildResult build_llava(const LlavaBuildOptions& options);

// The name mm_vision_tower gets, and the vision tower's folder inside the LLaVA folder.
inline constexpr const char* kBuiltVisionTowerName = "clip-vision";

}  // namespace align2
