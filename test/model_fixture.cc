#include "test/model_fixture.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/model/safetensors.h"
#include "test/test_support.h"

namespace align2::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Canonical weights: name → (shape, values), drawn in a fixed order from one stream.
struct Weights {
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> all;
};

Weights make_weights(const TinyModelOptions& o, bool vision) {
  std::mt19937 rng(o.seed);
  auto draw = [&](float lo, float hi) { return lo + (hi - lo) * float(rng() >> 8) / float(1u << 24); };
  Weights w;
  auto put = [&](const std::string& name, std::vector<std::int64_t> shape, bool norm = false) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = norm ? 1.0f + draw(-o.scale / 4, o.scale / 4) : draw(-o.scale, o.scale);
    w.all[name] = {shape, v};
  };
  const std::int64_t H = o.hidden, hd = o.hidden / o.heads, kvd = o.kv_heads * hd;
  put("llm.embed_tokens.weight", {o.vocab, H});
  for (std::int64_t l = 0; l < o.layers; ++l) {
    std::string p = fmt::format("llm.layers.{}.", l);
    put(p + "input_layernorm.weight", {H}, true);
    put(p + "self_attn.q_proj.weight", {H, H});
    put(p + "self_attn.k_proj.weight", {kvd, H});
    put(p + "self_attn.v_proj.weight", {kvd, H});
    put(p + "self_attn.o_proj.weight", {H, H});
    put(p + "post_attention_layernorm.weight", {H}, true);
    put(p + "mlp.gate_proj.weight", {o.intermediate, H});
    put(p + "mlp.up_proj.weight", {o.intermediate, H});
    put(p + "mlp.down_proj.weight", {H, o.intermediate});
  }
  put("llm.norm.weight", {H}, true);
  if (!o.tie_embeddings) put("llm.lm_head.weight", {o.vocab, H});
  if (!vision) return w;
  const std::int64_t V = o.vision_hidden, I = o.vision_intermediate, g = o.image_size / o.patch_size;
  put("vision.embeddings.class_embedding", {V});
  put("vision.embeddings.patch_embedding.weight", {V, 3, o.patch_size, o.patch_size});
  put("vision.embeddings.position_embedding.weight", {g * g + 1, V});
  put("vision.pre_layrnorm.weight", {V}, true);
  put("vision.pre_layrnorm.bias", {V});
  for (std::int64_t l = 0; l < o.vision_layers; ++l) {
    std::string p = fmt::format("vision.encoder.layers.{}.", l);
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      put(p + "self_attn." + proj + ".weight", {V, V});
      put(p + "self_attn." + proj + ".bias", {V});
    }
    put(p + "layer_norm1.weight", {V}, true);
    put(p + "layer_norm1.bias", {V});
    put(p + "layer_norm2.weight", {V}, true);
    put(p + "layer_norm2.bias", {V});
    put(p + "mlp.fc1.weight", {I, V});
    put(p + "mlp.fc1.bias", {I});
    put(p + "mlp.fc2.weight", {V, I});
    put(p + "mlp.fc2.bias", {V});
  }
  put("vision.post_layernorm.weight", {V}, true);
  put("vision.post_layernorm.bias", {V});
  put("projector.0.weight", {H, V});
  put("projector.0.bias", {H});
  put("projector.1.weight", {H, H});
  put("projector.1.bias", {H});
  return w;
}

json llama_json(const TinyModelOptions& o) {
  return {{"hidden_size", o.hidden},          {"intermediate_size", o.intermediate},
          {"num_hidden_layers", o.layers},    {"num_attention_heads", o.heads},
          {"num_key_value_heads", o.kv_heads}, {"vocab_size", o.vocab},
          {"max_position_embeddings", o.max_positions}, {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},            {"tie_word_embeddings", o.tie_embeddings},
          {"hidden_act", "silu"},             {"bos_token_id", 1},
          {"eos_token_id", 2},                {"model_type", "llama"}};
}

json vision_json(const TinyModelOptions& o) {
  return {{"hidden_size", o.vision_hidden}, {"intermediate_size", o.vision_intermediate},
          {"num_hidden_layers", o.vision_layers}, {"num_attention_heads", o.vision_heads},
          {"image_size", o.image_size}, {"patch_size", o.patch_size}, {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5}, {"model_type", "clip_vision_model"}, {"num_channels", 3}};
}

json preprocessor_json(const TinyModelOptions& o) {
  return {{"crop_size", {{"height", o.image_size}, {"width", o.image_size}}},
          {"size", {{"shortest_edge", o.image_size}}},
          {"do_center_crop", true}, {"do_normalize", true}, {"do_resize", true},
          {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
          {"image_std", {0.26862954, 0.26130258, 0.27577711}},
          {"resample", 3}, {"rescale_factor", 1.0 / 255}, {"image_processor_type", "CLIPImageProcessor"}};
}

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
}

// Writes the canonical weights renamed by `rename` (returning "" drops a tensor).
void write_weights(const fs::path& file, const Weights& w, const std::function<std::string(const std::string&)>& rename) {
  std::vector<TensorData> tensors;
  for (const auto& [name, sv] : w.all) {
    std::string real = rename(name);
    if (!real.empty()) tensors.push_back(float_tensor(real, sv.first, sv.second));
  }
  write_safetensors(file.string(), tensors);
}

std::string replace_prefix(const std::string& name, const std::string& from, const std::string& to) {
  return name.rfind(from, 0) == 0 ? to + name.substr(from.size()) : "";
}

}  // namespace

void write_tiny_model(const std::string& dir_s, TinyLayout layout, const TinyModelOptions& o,
                      const std::string& tokenizer_model) {
  fs::path dir(dir_s);
  fs::create_directories(dir);
  if (!tokenizer_model.empty()) fs::copy_file(tokenizer_model, dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  bool vision = layout != TinyLayout::llama;
  Weights w = make_weights(o, vision);
  auto llm_name = [](const std::string& n, const std::string& model_prefix, const std::string& head) {
    if (n == "llm.lm_head.weight") return head;
    return replace_prefix(n, "llm.", model_prefix);
  };
  switch (layout) {
    case TinyLayout::llama: {
      json c = llama_json(o);
      c["architectures"] = {"LlamaForCausalLM"};
      write_json(dir / "config.json", c);
      write_weights(dir / "model.safetensors", w, [&](const std::string& n) { return llm_name(n, "model.", "lm_head.weight"); });
      break;
    }
    case TinyLayout::llava_liuhaotian: {
      fs::path clip = dir.parent_path() / (dir.filename().string() + "-clip");
      fs::create_directories(clip);
      json vc = vision_json(o);
      vc["architectures"] = {"CLIPVisionModel"};
      write_json(clip / "config.json", vc);
      write_json(clip / "preprocessor_config.json", preprocessor_json(o));
      write_weights(clip / "model.safetensors", w, [](const std::string& n) { return replace_prefix(n, "vision.", "vision_model."); });
      json c = llama_json(o);
      c["architectures"] = {"LlavaLlamaForCausalLM"};
      c["model_type"] = "llava_llama";
      c["mm_vision_tower"] = fs::absolute(clip).string();
      c["mm_hidden_size"] = o.vision_hidden;
      c["mm_projector_type"] = "mlp2x_gelu";
      c["mm_vision_select_layer"] = -2;
      c["mm_vision_select_feature"] = "patch";
      c["image_aspect_ratio"] = "pad";
      c["mm_use_im_start_end"] = false;
      c["mm_use_im_patch_token"] = false;
      write_json(dir / "config.json", c);
      write_weights(dir / "model.safetensors", w, [&](const std::string& n) {
        if (n.rfind("projector.", 0) == 0) return "model.mm_projector." + std::string(n[10] == '0' ? "0" : "2") + n.substr(11);
        return llm_name(n, "model.", "lm_head.weight");
      });
      break;
    }
    case TinyLayout::llava_hf4:
    case TinyLayout::llava_hf5: {
      bool v5 = layout == TinyLayout::llava_hf5;
      json c = {{"architectures", {"LlavaForConditionalGeneration"}},
                {"model_type", "llava"},
                {"text_config", llama_json(o)},
                {"vision_config", vision_json(o)},
                {"image_token_index", o.vocab - 1},
                {"projector_hidden_act", "gelu"},
                {"vision_feature_layer", -2},
                {"vision_feature_select_strategy", "default"},
                {"tie_word_embeddings", o.tie_embeddings}};
      write_json(dir / "config.json", c);
      write_json(dir / "preprocessor_config.json", preprocessor_json(o));
      write_weights(dir / "model.safetensors", w, [&](const std::string& n) {
        if (n.rfind("projector.", 0) == 0)
          return std::string(v5 ? "model." : "") + "multi_modal_projector.linear_" + (n[10] == '0' ? "1" : "2") +
                 n.substr(11);
        if (n.rfind("vision.", 0) == 0)
          return replace_prefix(n, "vision.", v5 ? "model.vision_tower.vision_model." : "vision_tower.vision_model.");
        return v5 ? llm_name(n, "model.language_model.", "lm_head.weight")
                  : llm_name(n, "language_model.model.", "language_model.lm_head.weight");
      });
      break;
    }
  }
}

void write_reward_model(const std::string& dir, const std::string& kind, std::uint32_t seed,
                        const std::string& base_model, std::int64_t hidden) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::ofstream(dir + "/reward_config.json")
      << nlohmann::json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", kind}, {"base_model", base_model}}
             .dump();
  std::mt19937 rng(seed);
  std::vector<float> w(static_cast<std::size_t>(hidden));
  for (float& x : w) x = float(rng() >> 8) / float(1u << 23) - 1.0f;  // uniform in [-1, 1)
  write_safetensors(dir + "/score_head.safetensors", {float_tensor("score.weight", {1, hidden}, w)});
}

void write_curate_job(const std::string& root, int records, const nlohmann::json& overrides) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  write_tiny_model(root + "/base", TinyLayout::llava_liuhaotian, {}, shared_path("models/stories260K-hf/tokenizer.model"));
  write_reward_model(root + "/qrm", "question", 1);
  write_reward_model(root + "/arm", "answer", 2);
  json all = json::parse(read_file(shared_path("data/llava/llava_instruct_60.json")));
  json pool = json::array();
  std::vector<std::string> photos;
  for (const auto& e : fs::directory_iterator(shared_path("data/images/rlaifv")))
    if (e.path().extension() == ".jpg") photos.push_back(e.path().string());
  std::sort(photos.begin(), photos.end());
  fs::create_directories(root + "/images");
  for (int i = 0; i < records; ++i) {
    const json& record = all.at(std::size_t(i));
    pool.push_back(record);
    fs::copy_file(photos[std::size_t(i) % photos.size()], root + "/images/" + record["image"].get<std::string>(),
                  fs::copy_options::overwrite_existing);
  }
  write_file(root + "/pool.json", pool.dump(1));
  json job = {{"pools", {"pool.json"}}, {"subsets", {{"pool.json", "conversation"}}}, {"image_root", "images"},
              {"question_model", "qrm"}, {"answer_model", "arm"}, {"alpha", 0.5}, {"beta", 0.5}, {"threads", 1}};
  for (auto& [k, v] : overrides.items()) job[k] = v;
  write_file(root + "/job.json", job.dump(2));
}

}  // namespace align2::test
