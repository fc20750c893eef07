// Tiny random models written as real checkpoint folders, for tests and benchmarks
// (test doubles: product code never writes random models). The same weights can be
// written in every supported layout, so that tests can check the layouts agree.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

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

// A reward-model folder (reward_config.json naming `base_model`, relative to the folder, and a
// score head "score.weight" [1, hidden] drawn from `seed`) for a base of LLM hidden size `hidden`.
void write_reward_model(const std::string& dir, const std::string& kind, std::uint32_t seed,
                        const std::string& base_model = "../base", std::int64_t hidden = 32);

// A tiny curation job under `root`: a tiny LLaVA base (root/base, the stories260K tokenizer),
// question and answer reward models (root/qrm, root/arm), the first `records` real LLaVA
// records of ../shared (root/pool.json) with a copy of a real photo under each record's COCO
// image name (root/images: a symlink would leave the image root and be refused), and
// root/job.json curating them (alpha 0.5, beta 0.5, one thread) with `overrides` applied.
void write_curate_job(const std::string& root, int records, const nlohmann::json& overrides = nlohmann::json::object());

}  // namespace align2::test
