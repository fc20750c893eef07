// Tiny random models written as real checkpoint folders, for tests and benchmarks
// (test doubles: product code never writes random models). The same weights can be
// written in every supported layout, so that tests can check the layouts agree.
#pragma once

#include <cstdint>
#include <string>

namespace align2::test {

struct TinyModelOptions {
  // LLM
  std::int64_t hidden = 32, intermediate = 64, layers = 2, heads = 4, kv_heads = 2, vocab = 512, max_positions = 2048;
  bool tie_embeddings = false;
  // vision tower (CLIP ViT)
  std::int64_t vision_hidden = 24, vision_intermediate = 48, vision_layers = 3, vision_heads = 2;
  std::int64_t image_size = 28, patch_size = 14;
  std::uint32_t seed = 1;
  float scale = 0.2f;  // weights uniform in [-scale, scale]; norms 1 ± scale/4
};

enum class TinyLayout { llama, llava_liuhaotian, llava_hf4, llava_hf5 };

// Writes config.json + model.safetensors to `dir`. For llava_liuhaotian the vision tower
// goes to `dir`/../<basename(dir)>-clip (a CLIPVisionModel folder) and mm_vision_tower
// names it by absolute path. Copies `tokenizer_model` (when not empty) as tokenizer.model.
void write_tiny_model(const std::string& dir, TinyLayout layout, const TinyModelOptions& options,
                      const std::string& tokenizer_model = "");

}  // namespace align2::test
