// Model folders as downloaded from the hub, written by hand with the real field sets of
// vicuna-7b-v1.5, liuhaotian/llava-v1.5-7b, llava-hf/llava-1.5-7b-hf (transformers 4.x and
// 5.x tensor names), openai/clip-vit-large-patch14-336 and a CLIPVisionModel folder; the
// real stories260K config; vision tower resolution; and a refusal naming file and key for
// every unsupported setting.
#include "core/model/model_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/model/safetensors.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Expects `fn` to throw a message starting with `file: key "key"` and holding `detail`.
template <typename Fn>
void expect_refusal(Fn fn, const std::string& file, const std::string& key, const std::string& detail = "") {
  std::string err = error_of(fn);
  ASSERT_FALSE(err.empty()) << "no error for " << file << " key " << key;
  EXPECT_EQ(err.rfind(file + ": key \"" + key + "\"", 0), 0u) << err;
  EXPECT_NE(err.find(detail), std::string::npos) << err;
}

// ---------------------------------------------------------------- real config files

// lmsys/vicuna-7b-v1.5 config.json
const char* kVicuna = R"({
  "_name_or_path": "vicuna-7b-v1.5",
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pad_token_id": 0,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0",
  "use_cache": true
})";

// liuhaotian/llava-v1.5-7b config.json
const char* kLlavaLiuhaotian = R"({
  "_name_or_path": "./checkpoints/vicuna-7b-v1-5",
  "architectures": ["LlavaLlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "freeze_mm_mlp_adapter": false,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "image_aspect_ratio": "pad",
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_length": 4096,
  "max_position_embeddings": 4096,
  "mm_hidden_size": 1024,
  "mm_patch_merge_type": "flat",
  "mm_projector_lr": null,
  "mm_projector_type": "mlp2x_gelu",
  "mm_use_im_patch_token": false,
  "mm_use_im_start_end": false,
  "mm_vision_select_feature": "patch",
  "mm_vision_select_layer": -2,
  "mm_vision_tower": "openai/clip-vit-large-patch14-336",
  "model_type": "llava",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pad_token_id": 0,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0",
  "tune_mm_mlp_adapter": false,
  "tune_mm_vision_resampler": false,
  "unfreeze_mm_vision_tower": false,
  "use_cache": true,
  "use_mm_proj": true,
  "vocab_size": 32000
})";

// llava-hf/llava-1.5-7b-hf config.json: text_config lists only what differs from LlamaConfig.
const char* kLlavaHf = R"({
  "architectures": ["LlavaForConditionalGeneration"],
  "ignore_index": -100,
  "image_token_index": 32000,
  "model_type": "llava",
  "pad_token_id": 32001,
  "projector_hidden_act": "gelu",
  "text_config": {
    "_name_or_path": "lmsys/vicuna-7b-v1.5",
    "architectures": ["LlamaForCausalLM"],
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "rms_norm_eps": 1e-05,
    "torch_dtype": "float16",
    "vocab_size": 32064
  },
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.36.0.dev0",
  "vision_config": {
    "hidden_size": 1024,
    "image_size": 336,
    "intermediate_size": 4096,
    "model_type": "clip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "projection_dim": 768,
    "vocab_size": 32000
  },
  "vision_feature_layer": -2,
  "vision_feature_select_strategy": "default",
  "vocab_size": 32064
})";

// llava-hf/llava-1.5-7b-hf preprocessor_config.json
const char* kLlavaHfPreprocessor = R"({
  "crop_size": {"height": 336, "width": 336},
  "do_center_crop": true,
  "do_convert_rgb": true,
  "do_normalize": true,
  "do_rescale": true,
  "do_resize": true,
  "image_mean": [0.48145466, 0.4578275, 0.40821073],
  "image_processor_type": "CLIPImageProcessor",
  "image_std": [0.26862954, 0.26130258, 0.27577711],
  "processor_class": "LlavaProcessor",
  "resample": 3,
  "rescale_factor": 0.00392156862745098,
  "size": {"shortest_edge": 336}
})";

// openai/clip-vit-large-patch14-336 config.json (CLIPModel; sub-configs dumped in full
// by an old transformers, plus the *_config_dict copies).
const char* kClipL336 = R"({
  "_name_or_path": "openai/clip-vit-large-patch14-336",
  "architectures": ["CLIPModel"],
  "initializer_factor": 1.0,
  "logit_scale_init_value": 2.6592,
  "model_type": "clip",
  "projection_dim": 768,
  "text_config": {
    "_name_or_path": "", "add_cross_attention": false, "architectures": null, "attention_dropout": 0.0,
    "bad_words_ids": null, "bos_token_id": 0, "chunk_size_feed_forward": 0, "decoder_start_token_id": null,
    "diversity_penalty": 0.0, "do_sample": false, "dropout": 0.0, "early_stopping": false, "eos_token_id": 2,
    "hidden_act": "quick_gelu", "hidden_size": 768, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "is_decoder": false,
    "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "layer_norm_eps": 1e-05, "max_length": 20,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "pruned_heads": {},
    "torch_dtype": null, "transformers_version": "4.21.3", "vocab_size": 49408
  },
  "text_config_dict": {
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
    "projection_dim": 768
  },
  "torch_dtype": "float32",
  "transformers_version": null,
  "vision_config": {
    "_name_or_path": "", "add_cross_attention": false, "architectures": null, "attention_dropout": 0.0,
    "bad_words_ids": null, "bos_token_id": null, "chunk_size_feed_forward": 0, "decoder_start_token_id": null,
    "diversity_penalty": 0.0, "do_sample": false, "dropout": 0.0, "early_stopping": false, "eos_token_id": null,
    "hidden_act": "quick_gelu", "hidden_size": 1024, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "image_size": 336, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
    "is_decoder": false, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "layer_norm_eps": 1e-05, "max_length": 20,
    "model_type": "clip_vision_model", "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24,
    "pad_token_id": null, "patch_size": 14, "projection_dim": 768, "pruned_heads": {}, "torch_dtype": null,
    "transformers_version": "4.21.3"
  },
  "vision_config_dict": {
    "hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "num_attention_heads": 16,
    "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768
  }
})";

// openai/clip-vit-large-patch14-336 preprocessor_config.json (old CLIPFeatureExtractor form).
const char* kClipPreprocessor = R"({
  "crop_size": 336,
  "do_center_crop": true,
  "do_normalize": true,
  "do_resize": true,
  "feature_extractor_type": "CLIPFeatureExtractor",
  "image_mean": [0.48145466, 0.4578275, 0.40821073],
  "image_std": [0.26862954, 0.26130258, 0.27577711],
  "resample": 3,
  "size": 336
})";

void write_clip_l336(const std::string& dir) {
  test::write_file(dir + "/config.json", kClipL336);
  test::write_file(dir + "/preprocessor_config.json", kClipPreprocessor);
}

// A config.json from a base text with some keys changed (null removes a key).
std::string patched(const char* base, const json& patch) {
  json j = json::parse(base);
  j.merge_patch(patch);
  return j.dump(2);
}

// One tiny tensor per name: enough for layout detection.
void write_names(const std::string& path, const std::vector<std::string>& names) {
  std::vector<TensorData> t;
  for (const std::string& n : names) t.push_back(float_tensor(n, {1}, {0}));
  write_safetensors(path, t);
}

void expect_clip_l336(const ClipVisionConfig& v) {
  EXPECT_EQ(v.hidden_size, 1024);
  EXPECT_EQ(v.intermediate_size, 4096);
  EXPECT_EQ(v.num_layers, 24);
  EXPECT_EQ(v.num_heads, 16);
  EXPECT_EQ(v.image_size, 336);
  EXPECT_EQ(v.patch_size, 14);
  EXPECT_EQ(v.num_channels, 3);
  EXPECT_EQ(v.num_patches(), 576);
  EXPECT_DOUBLE_EQ(v.layer_norm_eps, 1e-5);
  EXPECT_EQ(v.hidden_act, "quick_gelu");
  EXPECT_EQ(v.image_mean, (std::vector<float>{0.48145466f, 0.4578275f, 0.40821073f}));
  EXPECT_EQ(v.image_std, (std::vector<float>{0.26862954f, 0.26130258f, 0.27577711f}));
}

void expect_vicuna_7b(const LlamaConfig& c) {
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_positions, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
}

// ---------------------------------------------------------------- LLaMA

TEST(ModelConfig, Vicuna7B) {
  std::string dir = test::scratch_dir("mc-vicuna");
  test::write_file(dir + "/config.json", kVicuna);
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::llama);
  EXPECT_STREQ(layout_name(spec.layout), "LlamaForCausalLM");
  EXPECT_EQ(spec.dir, dir);
  EXPECT_TRUE(spec.has_llm);
  EXPECT_FALSE(spec.has_vision);
  EXPECT_FALSE(spec.has_projector);
  expect_vicuna_7b(spec.llm);
  EXPECT_EQ(spec.llm.vocab_size, 32000);
  EXPECT_EQ(spec.llm.pad_token_id, 0);

  EXPECT_EQ(spec.llm_weight("embed_tokens.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(spec.llm_weight("layers.3.self_attn.q_proj.weight"), "model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(spec.llm_weight("norm.weight"), "model.norm.weight");
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "lm_head.weight");
  EXPECT_THROW(spec.vision_weight("pre_layrnorm.weight"), std::logic_error);
  EXPECT_THROW(spec.projector_weight(0, "weight"), std::logic_error);
}

TEST(ModelConfig, LlamaDefaultsAndOptionalKeys) {
  std::string dir = test::scratch_dir("mc-llama-defaults");
  test::write_file(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"]})");
  ModelSpec spec = load_model_spec(dir);
  const LlamaConfig& c = spec.llm;  // transformers' LlamaConfig defaults
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.pad_token_id, -1);

  // head_dim given explicitly; GQA; transformers 5.x rope_parameters; a list of eos ids.
  test::write_file(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
    "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64, "pad_token_id": null,
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}, "eos_token_id": [7, 8]})");
  spec = load_model_spec(dir);
  EXPECT_EQ(spec.llm.head_dim, 64);
  EXPECT_EQ(spec.llm.num_kv_heads, 4);
  EXPECT_DOUBLE_EQ(spec.llm.rope_theta, 500000.0);
  EXPECT_EQ(spec.llm.eos_token_id, 7);
  EXPECT_EQ(spec.llm.pad_token_id, -1);
}

TEST(ModelConfig, RealStories260K) {
  std::string dir = fs::path(test::shared_path("models/stories260K-hf/config.json")).parent_path().string();
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::llama);
  const LlamaConfig& c = spec.llm;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_positions, 512);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);

  // Every weight the mapping names is in the real checkpoint with the implied shape;
  // the tied lm_head maps to the embedding.
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "model.embed_tokens.weight");
  Checkpoint ckpt(dir);
  const std::int64_t H = c.hidden_size, kv = c.num_kv_heads * c.head_dim, I = c.intermediate_size;
  ckpt.get(spec.llm_weight("embed_tokens.weight"), {c.vocab_size, H});
  ckpt.get(spec.llm_weight("lm_head.weight"), {c.vocab_size, H});
  ckpt.get(spec.llm_weight("norm.weight"), {H});
  for (int l = 0; l < c.num_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    ckpt.get(spec.llm_weight(p + "input_layernorm.weight"), {H});
    ckpt.get(spec.llm_weight(p + "post_attention_layernorm.weight"), {H});
    ckpt.get(spec.llm_weight(p + "self_attn.q_proj.weight"), {c.num_heads * c.head_dim, H});
    ckpt.get(spec.llm_weight(p + "self_attn.k_proj.weight"), {kv, H});
    ckpt.get(spec.llm_weight(p + "self_attn.v_proj.weight"), {kv, H});
    ckpt.get(spec.llm_weight(p + "self_attn.o_proj.weight"), {H, c.num_heads * c.head_dim});
    ckpt.get(spec.llm_weight(p + "mlp.gate_proj.weight"), {I, H});
    ckpt.get(spec.llm_weight(p + "mlp.up_proj.weight"), {I, H});
    ckpt.get(spec.llm_weight(p + "mlp.down_proj.weight"), {H, I});
  }
}

// ---------------------------------------------------------------- liuhaotian LLaVA

void expect_llava_v15_7b(const ModelSpec& spec, const std::string& vision_dir) {
  EXPECT_EQ(spec.layout, ModelLayout::llava_liuhaotian);
  EXPECT_TRUE(spec.has_llm && spec.has_vision && spec.has_projector);
  expect_vicuna_7b(spec.llm);
  EXPECT_EQ(spec.llm.vocab_size, 32000);
  EXPECT_EQ(spec.llm.pad_token_id, 0);
  EXPECT_EQ(spec.vision_dir, vision_dir);
  EXPECT_EQ(spec.vision_layout, ModelLayout::clip_model);
  expect_clip_l336(spec.vision);
  EXPECT_EQ(spec.vision_select_layer, -2);
  EXPECT_TRUE(spec.vision_drop_cls);
  EXPECT_EQ(spec.image_aspect_ratio, "pad");
  EXPECT_EQ(spec.projector, ProjectorType::mlp2x_gelu);
  EXPECT_EQ(spec.image_token_index, -200);
}

TEST(ModelConfig, LlavaLiuhaotianWithSiblingClipFolder) {
  std::string root = test::scratch_dir("mc-liuhaotian");
  std::string dir = root + "/llava-v1.5-7b";
  test::write_file(dir + "/config.json", kLlavaLiuhaotian);
  write_clip_l336(root + "/clip-vit-large-patch14-336");
  ModelSpec spec = load_model_spec(dir);
  expect_llava_v15_7b(spec, (fs::path(root) / "clip-vit-large-patch14-336").string());
  EXPECT_STREQ(layout_name(spec.layout), "LlavaLlamaForCausalLM (liuhaotian)");

  EXPECT_EQ(spec.llm_weight("embed_tokens.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(spec.llm_weight("layers.31.mlp.down_proj.weight"), "model.layers.31.mlp.down_proj.weight");
  EXPECT_EQ(spec.llm_weight("norm.weight"), "model.norm.weight");
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(spec.projector_weight(0, "weight"), "model.mm_projector.0.weight");
  EXPECT_EQ(spec.projector_weight(0, "bias"), "model.mm_projector.0.bias");
  EXPECT_EQ(spec.projector_weight(1, "weight"), "model.mm_projector.2.weight");
  EXPECT_EQ(spec.projector_weight(1, "bias"), "model.mm_projector.2.bias");
  EXPECT_THROW(spec.projector_weight(2, "weight"), std::logic_error);
  EXPECT_THROW(spec.projector_weight(0, "scale"), std::logic_error);
  EXPECT_EQ(spec.vision_weight("embeddings.patch_embedding.weight"), "vision_model.embeddings.patch_embedding.weight");
  EXPECT_EQ(spec.vision_weight("encoder.layers.0.mlp.fc1.bias"), "vision_model.encoder.layers.0.mlp.fc1.bias");
  EXPECT_EQ(spec.vision_weight("pre_layrnorm.weight"), "vision_model.pre_layrnorm.weight");

  // The folder name with a trailing slash resolves alike.
  EXPECT_EQ(load_model_spec(dir + "/").vision_dir, spec.vision_dir);
}

TEST(ModelConfig, LlavaLiuhaotianVisionTowerResolution) {
  std::string root = test::scratch_dir("mc-tower");
  std::string dir = root + "/models/llava";
  test::write_file(dir + "/config.json", kLlavaLiuhaotian);

  // Explicit folder wins over everything (here: nothing else exists).
  write_clip_l336(root + "/elsewhere/my-clip");
  EXPECT_EQ(load_model_spec(dir, root + "/elsewhere/my-clip").vision_dir, root + "/elsewhere/my-clip");
  // An explicit folder without config.json is refused.
  std::string err = error_of([&] { load_model_spec(dir, root + "/nowhere"); });
  EXPECT_NE(err.find(root + "/nowhere: not a folder with config.json"), std::string::npos) << err;

  // mm_vision_tower naming an existing folder.
  test::write_file(dir + "/config.json",
                   patched(kLlavaLiuhaotian, {{"mm_vision_tower", root + "/elsewhere/my-clip"}}));
  EXPECT_EQ(load_model_spec(dir).vision_dir, root + "/elsewhere/my-clip");
  test::write_file(dir + "/config.json", kLlavaLiuhaotian);

  // Nothing found: the error names config.json, the key and where it looked.
  const char* env_names[] = {"HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"};
  std::map<std::string, std::string> saved;
  for (const char* n : env_names)
    if (const char* v = std::getenv(n)) saved[n] = v;
  for (const char* n : env_names) unsetenv(n);
  std::string home = root + "/home";
  setenv("HOME", home.c_str(), 1);
  expect_refusal([&] { load_model_spec(dir); }, dir + "/config.json", "mm_vision_tower",
                 "vision tower \"openai/clip-vit-large-patch14-336\" not found");
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_NE(err.find(root + "/models/clip-vit-large-patch14-336"), std::string::npos) << err;
  EXPECT_NE(err.find("models--openai--clip-vit-large-patch14-336"), std::string::npos) << err;

  // The Hugging Face cache under $HOME: refs/main picks the snapshot.
  std::string repo = home + "/.cache/huggingface/hub/models--openai--clip-vit-large-patch14-336";
  write_clip_l336(repo + "/snapshots/aaaa1111");
  write_clip_l336(repo + "/snapshots/bbbb2222");
  test::write_file(repo + "/refs/main", "bbbb2222");
  ModelSpec spec = load_model_spec(dir);
  expect_llava_v15_7b(spec, repo + "/snapshots/bbbb2222");
  // Without refs/main, two snapshots are ambiguous; one is not.
  fs::remove(repo + "/refs/main");
  expect_refusal([&] { load_model_spec(dir); }, dir + "/config.json", "mm_vision_tower", "several snapshots");
  fs::remove_all(repo + "/snapshots/aaaa1111");
  EXPECT_EQ(load_model_spec(dir).vision_dir, repo + "/snapshots/bbbb2222");
  // HF_HUB_CACHE is honoured before $HOME.
  std::string hub = root + "/hub";
  write_clip_l336(hub + "/models--openai--clip-vit-large-patch14-336/snapshots/cccc3333");
  setenv("HF_HUB_CACHE", hub.c_str(), 1);
  EXPECT_EQ(load_model_spec(dir).vision_dir, hub + "/models--openai--clip-vit-large-patch14-336/snapshots/cccc3333");
  unsetenv("HF_HUB_CACHE");

  // A folder inside the model folder beats the cache; one beside it beats both.
  write_clip_l336(dir + "/clip-vit-large-patch14-336");
  EXPECT_EQ(load_model_spec(dir).vision_dir, (fs::path(dir) / "clip-vit-large-patch14-336").string());
  write_clip_l336(root + "/models/clip-vit-large-patch14-336");
  EXPECT_EQ(load_model_spec(dir).vision_dir, (fs::path(root) / "models/clip-vit-large-patch14-336").string());

  for (const char* n : env_names) unsetenv(n);
  for (const auto& [n, v] : saved) setenv(n.c_str(), v.c_str(), 1);
}

TEST(ModelConfig, LlavaLiuhaotianVariants) {
  std::string root = test::scratch_dir("mc-liuhaotian-variants");
  std::string dir = root + "/llava";
  write_clip_l336(root + "/clip-vit-large-patch14-336");

  // LLaVA-1 style: linear projector (nn.Linear itself: no index in the name), CLS kept,
  // no image_aspect_ratio (the plain CLIP processor).
  test::write_file(dir + "/config.json", patched(kLlavaLiuhaotian, {{"mm_projector_type", "linear"},
                                                                    {"mm_vision_select_feature", "cls_patch"},
                                                                    {"mm_vision_select_layer", -1},
                                                                    {"image_aspect_ratio", nullptr}}));
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.projector, ProjectorType::linear);
  EXPECT_EQ(spec.projector_weight(0, "weight"), "model.mm_projector.weight");
  EXPECT_EQ(spec.projector_weight(0, "bias"), "model.mm_projector.bias");
  EXPECT_THROW(spec.projector_weight(1, "weight"), std::logic_error);
  EXPECT_FALSE(spec.vision_drop_cls);
  EXPECT_EQ(spec.vision_select_layer, -1);
  EXPECT_EQ(spec.image_aspect_ratio, "square");

  // A CLIPVisionModel tower folder.
  std::string tower = root + "/tower";
  json vc = json::parse(kClipL336)["vision_config"];
  vc["architectures"] = {"CLIPVisionModel"};
  test::write_file(tower + "/config.json", vc.dump());
  test::write_file(tower + "/preprocessor_config.json", kLlavaHfPreprocessor);
  test::write_file(dir + "/config.json", kLlavaLiuhaotian);
  spec = load_model_spec(dir, tower);
  EXPECT_EQ(spec.vision_layout, ModelLayout::clip_vision);
  expect_clip_l336(spec.vision);
  EXPECT_EQ(spec.vision_weight("post_layernorm.bias"), "vision_model.post_layernorm.bias");
}

// ---------------------------------------------------------------- llava-hf

void write_llava_hf(const std::string& dir, bool v5) {
  test::write_file(dir + "/config.json", kLlavaHf);
  test::write_file(dir + "/preprocessor_config.json", kLlavaHfPreprocessor);
  std::string lm = v5 ? "model.language_model." : "language_model.model.";
  std::string vt = v5 ? "model.vision_tower.vision_model." : "vision_tower.vision_model.";
  std::string pj = v5 ? "model.multi_modal_projector." : "multi_modal_projector.";
  write_names(dir + "/model.safetensors",
              {lm + "embed_tokens.weight", lm + "layers.0.mlp.up_proj.weight", lm + "norm.weight",
               v5 ? "lm_head.weight" : "language_model.lm_head.weight", vt + "embeddings.patch_embedding.weight",
               vt + "encoder.layers.0.mlp.fc1.bias", vt + "pre_layrnorm.weight", pj + "linear_1.weight",
               pj + "linear_1.bias", pj + "linear_2.weight", pj + "linear_2.bias"});
}

void expect_llava_hf_7b(const ModelSpec& spec, const std::string& dir) {
  EXPECT_TRUE(spec.has_llm && spec.has_vision && spec.has_projector);
  expect_vicuna_7b(spec.llm);  // hidden size, layers, heads: LlamaConfig defaults
  EXPECT_EQ(spec.llm.vocab_size, 32064);
  EXPECT_EQ(spec.llm.pad_token_id, 32001);
  EXPECT_EQ(spec.vision_dir, dir);
  expect_clip_l336(spec.vision);
  EXPECT_EQ(spec.vision_select_layer, -2);
  EXPECT_TRUE(spec.vision_drop_cls);
  EXPECT_EQ(spec.image_aspect_ratio, "square");  // CLIPImageProcessor: resize + center crop
  EXPECT_EQ(spec.projector, ProjectorType::mlp2x_gelu);
  EXPECT_EQ(spec.image_token_index, 32000);
}

TEST(ModelConfig, LlavaHfTransformers4Names) {
  std::string dir = test::scratch_dir("mc-hf4");
  write_llava_hf(dir, false);
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::llava_hf4);
  EXPECT_EQ(spec.vision_layout, ModelLayout::llava_hf4);
  EXPECT_STREQ(layout_name(spec.layout), "LlavaForConditionalGeneration (transformers 4.x names)");
  expect_llava_hf_7b(spec, dir);
  EXPECT_EQ(spec.llm_weight("embed_tokens.weight"), "language_model.model.embed_tokens.weight");
  EXPECT_EQ(spec.llm_weight("layers.0.mlp.up_proj.weight"), "language_model.model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(spec.llm_weight("norm.weight"), "language_model.model.norm.weight");
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "language_model.lm_head.weight");
  EXPECT_EQ(spec.vision_weight("embeddings.patch_embedding.weight"),
            "vision_tower.vision_model.embeddings.patch_embedding.weight");
  EXPECT_EQ(spec.projector_weight(0, "weight"), "multi_modal_projector.linear_1.weight");
  EXPECT_EQ(spec.projector_weight(1, "bias"), "multi_modal_projector.linear_2.bias");
  Checkpoint ckpt(dir);
  for (const std::string& n : {spec.llm_weight("embed_tokens.weight"), spec.llm_weight("norm.weight"),
                               spec.llm_weight("lm_head.weight"), spec.vision_weight("encoder.layers.0.mlp.fc1.bias"),
                               spec.vision_weight("pre_layrnorm.weight"), spec.projector_weight(0, "bias"),
                               spec.projector_weight(1, "weight")})
    EXPECT_TRUE(ckpt.has(n)) << n;
}

TEST(ModelConfig, LlavaHfTransformers5Names) {
  std::string dir = test::scratch_dir("mc-hf5");
  write_llava_hf(dir, true);
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::llava_hf5);
  EXPECT_EQ(spec.vision_layout, ModelLayout::llava_hf5);
  expect_llava_hf_7b(spec, dir);
  EXPECT_EQ(spec.llm_weight("embed_tokens.weight"), "model.language_model.embed_tokens.weight");
  EXPECT_EQ(spec.llm_weight("layers.0.mlp.up_proj.weight"), "model.language_model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(spec.vision_weight("encoder.layers.0.mlp.fc1.bias"),
            "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.bias");
  EXPECT_EQ(spec.projector_weight(0, "weight"), "model.multi_modal_projector.linear_1.weight");
  EXPECT_EQ(spec.projector_weight(1, "bias"), "model.multi_modal_projector.linear_2.bias");
  Checkpoint ckpt(dir);
  for (const std::string& n : {spec.llm_weight("embed_tokens.weight"), spec.llm_weight("layers.0.mlp.up_proj.weight"),
                               spec.llm_weight("lm_head.weight"), spec.vision_weight("embeddings.patch_embedding.weight"),
                               spec.projector_weight(0, "weight"), spec.projector_weight(1, "bias")})
    EXPECT_TRUE(ckpt.has(n)) << n;
}

TEST(ModelConfig, LlavaHfLayoutDetection) {
  std::string dir = test::scratch_dir("mc-hf-detect");
  write_llava_hf(dir, false);
  write_names(dir + "/model.safetensors",
              {"language_model.model.embed_tokens.weight", "model.language_model.embed_tokens.weight"});
  std::string err = error_of([&] { load_model_spec(dir); });
  EXPECT_NE(err.find(dir + ": cannot tell the tensor names apart"), std::string::npos) << err;
  EXPECT_NE(err.find("found both"), std::string::npos) << err;
  write_names(dir + "/model.safetensors", {"model.embed_tokens.weight"});
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_NE(err.find("found neither"), std::string::npos) << err;
  // Pickle weights only: the checkpoint's refusal.
  fs::remove(dir + "/model.safetensors");
  test::write_file(dir + "/pytorch_model.bin", "pickle");
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_NE(err.find("only safetensors"), std::string::npos) << err;
}

TEST(ModelConfig, LlavaHfNestedConfigsTakeTheirOwnDefaults) {
  std::string dir = test::scratch_dir("mc-hf-defaults");
  write_llava_hf(dir, false);
  fs::remove(dir + "/preprocessor_config.json");
  // No sub-configs at all: LlamaConfig() and LlavaConfig's CLIP-L/336 vision tower.
  test::write_file(dir + "/config.json", R"({"architectures": ["LlavaForConditionalGeneration"]})");
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.llm.hidden_size, 4096);
  EXPECT_EQ(spec.llm.vocab_size, 32000);
  EXPECT_EQ(spec.llm.max_positions, 2048);
  EXPECT_DOUBLE_EQ(spec.llm.rms_norm_eps, 1e-6);
  EXPECT_EQ(spec.llm.pad_token_id, -1);
  expect_clip_l336(spec.vision);  // mean/std: the CLIP defaults
  EXPECT_EQ(spec.image_token_index, 32000);
  EXPECT_EQ(spec.vision_select_layer, -2);
  EXPECT_TRUE(spec.vision_drop_cls);
  // A vision_config listing one field: every other field is CLIPVisionConfig's default.
  test::write_file(dir + "/config.json", R"({"architectures": ["LlavaForConditionalGeneration"],
    "vision_config": {"hidden_size": 1536}, "text_config": {"hidden_size": 2048, "num_attention_heads": 16},
    "vision_feature_select_strategy": "full", "vision_feature_layer": -1, "image_token_index": 31999})");
  spec = load_model_spec(dir);
  EXPECT_EQ(spec.vision.hidden_size, 1536);
  EXPECT_EQ(spec.vision.intermediate_size, 3072);
  EXPECT_EQ(spec.vision.num_layers, 12);
  EXPECT_EQ(spec.vision.num_heads, 12);
  EXPECT_EQ(spec.vision.image_size, 224);
  EXPECT_EQ(spec.vision.patch_size, 32);
  EXPECT_EQ(spec.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(spec.llm.hidden_size, 2048);
  EXPECT_EQ(spec.llm.head_dim, 128);
  EXPECT_EQ(spec.llm.num_kv_heads, 16);
  EXPECT_FALSE(spec.vision_drop_cls);
  EXPECT_EQ(spec.vision_select_layer, -1);
  EXPECT_EQ(spec.image_token_index, 31999);
  // A tied text config ties the whole model.
  test::write_file(dir + "/config.json", R"({"architectures": ["LlavaForConditionalGeneration"],
    "text_config": {"tie_word_embeddings": true}})");
  spec = load_model_spec(dir);
  EXPECT_TRUE(spec.llm.tie_word_embeddings);
  EXPECT_EQ(spec.llm_weight("lm_head.weight"), "language_model.model.embed_tokens.weight");
}

// ---------------------------------------------------------------- CLIP folders

TEST(ModelConfig, ClipModelL336) {
  std::string dir = test::scratch_dir("mc-clip");
  write_clip_l336(dir);
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::clip_model);
  EXPECT_STREQ(layout_name(spec.layout), "CLIPModel");
  EXPECT_TRUE(spec.has_vision);
  EXPECT_FALSE(spec.has_llm);
  EXPECT_FALSE(spec.has_projector);
  EXPECT_EQ(spec.vision_dir, dir);
  EXPECT_EQ(spec.vision_layout, ModelLayout::clip_model);
  expect_clip_l336(spec.vision);
  EXPECT_EQ(spec.vision_weight("embeddings.class_embedding"), "vision_model.embeddings.class_embedding");
  EXPECT_EQ(spec.vision_weight("pre_layrnorm.weight"), "vision_model.pre_layrnorm.weight");
  EXPECT_THROW(spec.llm_weight("embed_tokens.weight"), std::logic_error);

  // vision_config_dict overrides vision_config (as CLIPConfig does).
  test::write_file(dir + "/config.json",
                   patched(kClipL336, {{"vision_config", {{"hidden_size", 1}}}, {"vision_config_dict", nullptr}}));
  EXPECT_THROW(load_model_spec(dir), std::runtime_error);
  test::write_file(dir + "/config.json", patched(kClipL336, {{"vision_config", {{"hidden_size", 1}}}}));
  expect_clip_l336(load_model_spec(dir).vision);
  // Preprocessing from preprocessor_config.json.
  test::write_file(dir + "/config.json", kClipL336);
  test::write_file(dir + "/preprocessor_config.json",
                   patched(kClipPreprocessor, {{"image_mean", {0.5, 0.5, 0.5}}, {"image_std", 0.25}}));
  spec = load_model_spec(dir);
  EXPECT_EQ(spec.vision.image_mean, (std::vector<float>{0.5f, 0.5f, 0.5f}));
  EXPECT_EQ(spec.vision.image_std, (std::vector<float>{0.25f, 0.25f, 0.25f}));
}

TEST(ModelConfig, ClipVisionModelDefaults) {
  std::string dir = test::scratch_dir("mc-clip-vision");
  test::write_file(dir + "/config.json",
                   R"({"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model"})");
  ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::clip_vision);
  EXPECT_STREQ(layout_name(spec.layout), "CLIPVisionModel");
  const ClipVisionConfig& v = spec.vision;  // CLIPVisionConfig defaults (ViT-B/32)
  EXPECT_EQ(v.hidden_size, 768);
  EXPECT_EQ(v.intermediate_size, 3072);
  EXPECT_EQ(v.num_layers, 12);
  EXPECT_EQ(v.num_heads, 12);
  EXPECT_EQ(v.image_size, 224);
  EXPECT_EQ(v.patch_size, 32);
  EXPECT_EQ(v.num_patches(), 49);
  EXPECT_DOUBLE_EQ(v.layer_norm_eps, 1e-5);
  EXPECT_EQ(v.hidden_act, "quick_gelu");
  EXPECT_EQ(v.image_mean, (std::vector<float>{0.48145466f, 0.4578275f, 0.40821073f}));
  EXPECT_EQ(spec.vision_weight("encoder.layers.11.self_attn.q_proj.weight"),
            "vision_model.encoder.layers.11.self_attn.q_proj.weight");
}

// ---------------------------------------------------------------- refusals

TEST(ModelConfig, RefusalsNameFileAndKey) {
  std::string dir = test::scratch_dir("mc-refuse");
  const std::string cfg = dir + "/config.json";
  auto llama = [&](const json& patch, const std::string& key, const std::string& detail) {
    SCOPED_TRACE(key);
    test::write_file(cfg, patched(kVicuna, patch));
    expect_refusal([&] { load_model_spec(dir); }, cfg, key, detail);
  };
  llama({{"architectures", {"MistralForCausalLM"}}}, "architectures", "\"MistralForCausalLM\" is not supported");
  llama({{"architectures", nullptr}}, "architectures", "missing");
  llama({{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}, "rope_scaling", "not supported");
  llama({{"rope_parameters", {{"rope_type", "llama3"}, {"rope_theta", 500000.0}}}}, "rope_parameters.rope_type",
        "\"llama3\"");
  llama({{"attention_bias", true}}, "attention_bias", "not supported");
  llama({{"mlp_bias", true}}, "mlp_bias", "not supported");
  llama({{"hidden_act", "gelu"}}, "hidden_act", "only silu");
  llama({{"hidden_size", "4096"}}, "hidden_size", "expected an integer");
  llama({{"hidden_size", 4096.0}}, "hidden_size", "expected an integer");
  llama({{"hidden_size", 0}}, "hidden_size", "not a size");
  llama({{"num_hidden_layers", -1}}, "num_hidden_layers", "not a size");
  llama({{"vocab_size", 1ll << 40}}, "vocab_size", "not a size");
  llama({{"num_key_value_heads", 5}}, "num_key_value_heads", "does not divide");
  llama({{"num_attention_heads", 31}, {"num_key_value_heads", nullptr}}, "num_attention_heads", "does not divide");
  llama({{"rms_norm_eps", -1}}, "rms_norm_eps", "not positive");
  llama({{"tie_word_embeddings", "no"}}, "tie_word_embeddings", "expected true or false");
  llama({{"model_type", "mistral"}}, "model_type", "only LLaMA");

  auto liuhaotian = [&](const json& patch, const std::string& key, const std::string& detail) {
    SCOPED_TRACE(key);
    test::write_file(cfg, patched(kLlavaLiuhaotian, patch));
    expect_refusal([&] { load_model_spec(dir, dir + "/clip"); }, cfg, key, detail);
  };
  write_clip_l336(dir + "/clip");
  test::write_file(cfg, kLlavaLiuhaotian);
  EXPECT_NO_THROW(load_model_spec(dir, dir + "/clip"));
  liuhaotian({{"mm_projector_type", "identity"}}, "mm_projector_type", "\"identity\"");
  liuhaotian({{"mm_projector_type", "mlp3x_gelu"}}, "mm_projector_type", "only \"linear\" and \"mlp2x_gelu\"");
  liuhaotian({{"mm_vision_select_feature", "cls"}}, "mm_vision_select_feature", "\"cls\"");
  liuhaotian({{"image_aspect_ratio", "anyres"}}, "image_aspect_ratio", "\"anyres\"");
  liuhaotian({{"mm_patch_merge_type", "spatial_unpad"}}, "mm_patch_merge_type", "only \"flat\"");
  liuhaotian({{"mm_use_im_start_end", true}}, "mm_use_im_start_end", "not supported");
  liuhaotian({{"unfreeze_mm_vision_tower", true}}, "unfreeze_mm_vision_tower", "not supported");
  liuhaotian({{"mm_hidden_size", 768}}, "mm_hidden_size", "differs from the hidden_size 1024");
  liuhaotian({{"mm_vision_select_layer", -26}}, "mm_vision_select_layer", "outside the 25 hidden states");
  liuhaotian({{"mm_vision_select_layer", 25}}, "mm_vision_select_layer", "outside");
  liuhaotian({{"mm_vision_select_layer", nullptr}}, "mm_vision_select_layer", "missing");
  liuhaotian({{"mm_vision_tower", nullptr}}, "mm_vision_tower", "missing");
  liuhaotian({{"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}}, "rope_scaling", "not supported");

  auto hf = [&](const json& patch, const std::string& key, const std::string& detail) {
    SCOPED_TRACE(key);
    test::write_file(cfg, patched(kLlavaHf, patch));
    expect_refusal([&] { load_model_spec(dir); }, cfg, key, detail);
  };
  write_names(dir + "/model.safetensors", {"language_model.model.embed_tokens.weight"});
  test::write_file(cfg, kLlavaHf);
  EXPECT_NO_THROW(load_model_spec(dir));
  hf({{"text_config", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}}}, "text_config.rope_scaling",
     "not supported");
  hf({{"text_config", {{"model_type", "mistral"}}}}, "text_config.model_type", "only LLaMA");
  hf({{"text_config", {{"hidden_act", "gelu"}}}}, "text_config.hidden_act", "only silu");
  hf({{"vision_config", {{"model_type", "siglip_vision_model"}}}}, "vision_config.model_type",
     "only CLIP vision towers");
  hf({{"vision_config", {{"hidden_act", "relu"}}}}, "vision_config.hidden_act", "only quick_gelu and gelu");
  hf({{"vision_config", {{"patch_size", 15}}}}, "vision_config.patch_size", "does not divide image_size 336");
  hf({{"vision_feature_layer", {-2, -5}}}, "vision_feature_layer", "only one feature layer");
  hf({{"vision_feature_layer", -30}}, "vision_feature_layer", "outside");
  hf({{"projector_hidden_act", "relu"}}, "projector_hidden_act", "only gelu");
  hf({{"vision_feature_select_strategy", "cls"}}, "vision_feature_select_strategy", "\"cls\"");
  hf({{"multimodal_projector_bias", false}}, "multimodal_projector_bias", "not supported");
  hf({{"image_token_index", "<image>"}}, "image_token_index", "expected an integer");
  hf({{"text_config", "llama"}}, "text_config", "expected an object");

  // preprocessor_config.json keys.
  const std::string pre = dir + "/preprocessor_config.json";
  test::write_file(cfg, kLlavaHf);
  auto preprocessor = [&](const json& patch, const std::string& key, const std::string& detail) {
    SCOPED_TRACE(key);
    test::write_file(pre, patched(kLlavaHfPreprocessor, patch));
    expect_refusal([&] { load_model_spec(dir); }, pre, key, detail);
  };
  preprocessor({{"crop_size", {{"height", 224}, {"width", 224}}}}, "crop_size", "does not match");
  preprocessor({{"crop_size", 224}}, "crop_size", "image_size 336");
  preprocessor({{"size", {{"shortest_edge", 224}}}}, "size", "shortest edge");
  preprocessor({{"image_std", {0.2, 0.0, 0.2}}}, "image_std", "out of range");
  preprocessor({{"image_mean", {0.5, 0.5}}}, "image_mean", "expected 3 numbers");
  test::write_file(pre, kLlavaHfPreprocessor);
  EXPECT_NO_THROW(load_model_spec(dir));

  // CLIPModel vision_config keys name the nested object.
  std::string clip = dir + "/clip";
  test::write_file(clip + "/config.json",
                   patched(kClipL336, {{"vision_config_dict", nullptr}, {"vision_config", {{"hidden_act", "relu"}}}}));
  expect_refusal([&] { load_model_spec(clip); }, clip + "/config.json", "vision_config.hidden_act", "relu");
  test::write_file(clip + "/config.json", patched(kClipL336, {{"vision_config_dict", {{"num_channels", 1}}}}));
  expect_refusal([&] { load_model_spec(clip); }, clip + "/config.json", "vision_config_dict.num_channels", "RGB");
}

TEST(ModelConfig, BrokenFolders) {
  std::string dir = test::scratch_dir("mc-broken");
  std::string err = error_of([&] { load_model_spec(dir); });
  EXPECT_EQ(err, dir + ": no config.json in the model folder");
  err = error_of([&] { load_model_spec(dir + "/missing"); });
  EXPECT_EQ(err, dir + "/missing: not a model folder");
  test::write_file(dir + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\"");
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_EQ(err, dir + "/config.json: not valid JSON");
  test::write_file(dir + "/config.json", "[]");
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_EQ(err, dir + "/config.json: not a JSON object");
  // Deep nesting is reported without dumping it.
  test::write_file(dir + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": " +
                                             std::string(200000, '[') + std::string(200000, ']') + "}");
  expect_refusal([&] { load_model_spec(dir); }, dir + "/config.json", "hidden_size",
                 "expected an integer, got a nested list");
  test::write_file(dir + "/config.json", "{\"architectures\": \"LlamaForCausalLM\"}");
  expect_refusal([&] { load_model_spec(dir); }, dir + "/config.json", "architectures", "expected a list");
  // A CLIP preprocessor that is not JSON.
  write_clip_l336(dir);
  test::write_file(dir + "/preprocessor_config.json", "{");
  err = error_of([&] { load_model_spec(dir); });
  EXPECT_EQ(err, dir + "/preprocessor_config.json: not valid JSON");
}

}  // namespace
}  // namespace align2
