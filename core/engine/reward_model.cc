#include "core/engine/reward_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/model/llava_prompt.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read", path));
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
}

std::string resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(dir) / path).lexically_normal().string();
}

}  // namespace

RewardConfig load_reward_config(const std::string& dir) {
  std::string path = (fs::path(dir) / "reward_config.json").string();
  json j = read_json(path);
  auto bad = [&](const std::string& key, const std::string& what) {
    return std::runtime_error(fmt::format("{}: key \"{}\": {}", path, key, what));
  };
  if (!j.is_object() || j.value("format", "") != "align2-reward-model")
    throw std::runtime_error(fmt::format("{}: not an align2 reward-model config (\"format\" must be "
                                         "\"align2-reward-model\")", path));
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != 1)
    throw bad("version", "this align2 reads version 1");
  static const std::set<std::string> known = {"format", "version", "kind", "base_model", "vision_tower", "max_length"};
  for (auto& [k, v] : j.items())
    if (!known.count(k)) throw bad(k, "unknown key");
  RewardConfig c;
  if (!j.contains("kind") || !j["kind"].is_string()) throw bad("kind", "missing or not a string");
  try {
    c.kind = reward_kind_from_name(j["kind"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw bad("kind", e.what());
  }
  if (!j.contains("base_model") || !j["base_model"].is_string()) throw bad("base_model", "missing or not a string");
  c.base_model = resolve(dir, j["base_model"].get<std::string>());
  if (j.contains("vision_tower")) {
    if (!j["vision_tower"].is_string()) throw bad("vision_tower", "not a string");
    c.vision_tower = resolve(dir, j["vision_tower"].get<std::string>());
  }
  if (j.contains("max_length")) {
    if (!j["max_length"].is_number_unsigned() || j["max_length"].get<std::int64_t>() < 2)
      throw bad("max_length", "expected an integer >= 2");
    c.max_length = j["max_length"].get<std::int64_t>();
  }
  return c;
}

ModelSpec reward_base_spec(const RewardConfig& config) { return load_model_spec(config.base_model, config.vision_tower); }

std::vector<std::string> reward_model_folders(const std::string& dir, const RewardConfig& config,
                                              const ModelSpec& base) {
  std::vector<std::string> folders = {dir, config.base_model};
  if (!base.vision_dir.empty() && base.vision_dir != base.dir) folders.push_back(base.vision_dir);
  return folders;
}

RewardModel::RewardModel(const std::string& dir, at::ScalarType dtype, at::Device device, const std::string& base_model)
    : config_(load_reward_config(dir)) {
  if (!base_model.empty()) config_.base_model = base_model;
  ModelSpec spec = reward_base_spec(config_);
  llava_ = std::make_unique<LlavaModel>(spec, dtype, device);
  tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(config_.base_model + "/tokenizer.model"));
  at::Tensor adapter_head;
  if (fs::exists(fs::path(dir) / "adapter_config.json")) adapter_head = merge_lora(dir);
  if (fs::exists(fs::path(dir) / "projector.safetensors")) {
    Checkpoint projector((fs::path(dir) / "projector.safetensors").string());
    llava_->replace_projector(projector);
  } else if (fs::exists(fs::path(dir) / "non_lora_trainables.safetensors")) {
    // The authors' trained projector, converted from their pickle with names unchanged.
    Checkpoint projector((fs::path(dir) / "non_lora_trainables.safetensors").string());
    llava_->replace_projector(projector, "base_model.model.");
  }
  std::string head_path = (fs::path(dir) / "score_head.safetensors").string();
  if (fs::exists(head_path) || !adapter_head.defined()) {
    Checkpoint head(head_path);
    score_w_ = load_tensor(head, "score.weight", {1, spec.llm.hidden_size}, at::kFloat);
  } else {
    score_w_ = adapter_head;
  }
  score_w_ = score_w_.view({-1}).to(device);
  folders_ = reward_model_folders(dir, config_, spec);
}

at::Tensor RewardModel::merge_lora(const std::string& dir) {
  std::string config_path = (fs::path(dir) / "adapter_config.json").string();
  json c = read_json(config_path);
  auto bad = [&](const std::string& key, const std::string& what) {
    return std::runtime_error(fmt::format("{}: key \"{}\": {}", config_path, key, what));
  };
  if (c.value("peft_type", "LORA") != "LORA") throw bad("peft_type", "only LORA adapters are supported");
  if (!c.contains("r") || !c["r"].is_number_unsigned() || c["r"].get<std::int64_t>() < 1) throw bad("r", "expected a positive integer");
  if (!c.contains("lora_alpha") || !c["lora_alpha"].is_number()) throw bad("lora_alpha", "expected a number");
  if (c.value("bias", "none") != "none") throw bad("bias", "only \"none\" is supported");
  if (c.value("fan_in_fan_out", false)) throw bad("fan_in_fan_out", "only false is supported");
  const double r = double(c["r"].get<std::int64_t>()), alpha = c["lora_alpha"].get<double>();
  const double scale = c.value("use_rslora", false) ? alpha / std::sqrt(r) : alpha / r;

  Checkpoint adapter((fs::path(dir) / "adapter_model.safetensors").string());
  std::set<std::string> used;
  LlamaModel& llm = llava_->llm();
  const ModelSpec& spec = llava_->spec();
  for (const std::string& canonical : llm.linear_names()) {
    std::string name = spec.llm_weight(canonical);                       // e.g. model.layers.0.self_attn.q_proj.weight
    std::string prefix = "base_model.model." + name.substr(0, name.size() - 7);  // drop ".weight"
    std::string a_name = prefix + ".lora_A.weight", b_name = prefix + ".lora_B.weight";
    if (!adapter.has(a_name) && !adapter.has(b_name)) continue;  // module not targeted
    at::Tensor& w = llm.weight(canonical);
    const std::int64_t out = w.size(0), in = w.size(1), rank = std::int64_t(r);
    at::Tensor A = load_tensor(adapter, a_name, {rank, in}, at::kFloat).to(w.device());
    at::Tensor B = load_tensor(adapter, b_name, {out, rank}, at::kFloat).to(w.device());
    // W + scale * B @ A in float32, rounded once to W's dtype, written into W's own storage: one
    // [out, in] float32 temporary, and no new weight allocated (the heap does not fragment).
    at::Tensor merged = at::matmul(B, A);  // [out, in] float32, on W's device
    merged.mul_(scale).add_(w);
    w.copy_(merged);
    used.insert(a_name);
    used.insert(b_name);
  }
  if (used.empty())
    throw std::runtime_error(fmt::format("{}: no LoRA tensor matches a linear layer of {} (expected names like "
                                         "base_model.model.{}.lora_A.weight)", adapter.path(), spec.dir,
                                         spec.llm_weight("layers.0.self_attn.q_proj.weight")));
  at::Tensor head;
  for (const char* name : {"base_model.model.score.weight", "base_model.model.score.modules_to_save.default.weight"})
    if (adapter.has(name)) {
      head = load_tensor(adapter, name, {1, spec.llm.hidden_size}, at::kFloat);
      used.insert(name);
    }
  for (const std::string& n : adapter.names())
    if (!used.count(n))
      throw std::runtime_error(fmt::format("{}: tensor {} is not a LoRA factor of the LLM's linear layers; "
                                           "align2 merges only those (score head and projector go to "
                                           "score_head.safetensors and projector.safetensors)", adapter.path(), n));
  return head;
}

at::Tensor RewardModel::image_features(const at::Tensor& pixel_values) const {
  return llava_->project(llava_->encode_images(pixel_values.unsqueeze(0))).squeeze(0);
}

RewardScore RewardModel::score(const std::string& text, const at::Tensor& features) const {
  return score_batch({RewardInput{text, features}}).at(0);
}

std::vector<RewardScore> RewardModel::score_batch(const std::vector<RewardInput>& inputs) const {
  std::vector<RewardScore> out(inputs.size());
  if (inputs.empty()) return out;
  std::vector<at::Tensor> sequences;  // each [T_i, hidden]
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::vector<std::int64_t> ids = tokenize_with_images(*tokenizer_, inputs[i].text, llava_->spec().image_token_index);
    std::vector<at::Tensor> images;
    if (inputs[i].features.defined()) images.push_back(inputs[i].features);
    at::Tensor embeds = llava_->splice(ids, images);
    if (embeds.size(0) > config_.max_length) {
      embeds = embeds.narrow(0, 0, config_.max_length);
      out[i].truncated = true;
    }
    sequences.push_back(embeds);
  }
  at::Tensor hidden = llava_->last_hidden(sequences).to(at::kFloat);  // [B, hidden] float32
  for (std::size_t i = 0; i < out.size(); ++i)  // a dot product per row: the same sum for any B
    out[i].score = at::dot(hidden[std::int64_t(i)], score_w_).item<float>();
  return out;
}

void merge_reward_model(const std::string& base_dir, const std::string& adapter_dir, const std::string& out_dir) {
  if (fs::exists(out_dir) && !fs::is_empty(out_dir))
    throw std::runtime_error(fmt::format("{}: the output folder exists and is not empty", out_dir));
  RewardModel rm(adapter_dir, at::kFloat, at::Device(at::kCPU), base_dir);
  const ModelSpec& spec = rm.llava().spec();
  LlamaModel& llm = const_cast<LlavaModel&>(rm.llava()).llm();
  std::map<std::string, std::string> merged;  // checkpoint name → canonical LLM name
  for (const std::string& canonical : llm.linear_names()) merged[spec.llm_weight(canonical)] = canonical;
  // The trained projector, from either file RewardModel reads (the authors' names carry a prefix).
  std::unique_ptr<Checkpoint> projector;
  std::string projector_prefix;
  if (fs::exists(fs::path(adapter_dir) / "projector.safetensors")) {
    projector = std::make_unique<Checkpoint>((fs::path(adapter_dir) / "projector.safetensors").string());
  } else if (fs::exists(fs::path(adapter_dir) / "non_lora_trainables.safetensors")) {
    projector = std::make_unique<Checkpoint>((fs::path(adapter_dir) / "non_lora_trainables.safetensors").string());
    projector_prefix = "base_model.model.";
  }

  Checkpoint base(base_dir);
  std::vector<TensorData> tensors;
  for (const std::string& name : base.names()) {
    const TensorView& v = base.get(name);
    TensorData t{name, v.dtype, v.shape, {}};
    const TensorView* source = &v;
    if (projector && projector->has(projector_prefix + name)) source = &projector->get(projector_prefix + name, v.shape);
    if (merged.count(name)) {
      at::Tensor w = llm.weight(merged[name]).to(at::kFloat).contiguous();
      at::ScalarType target = v.dtype == DType::bf16 ? at::kBFloat16 : v.dtype == DType::f16 ? at::kHalf : at::kFloat;
      at::Tensor out = w.to(target).contiguous();
      t.bytes.resize(std::size_t(out.numel()) * out.element_size());
      std::memcpy(t.bytes.data(), out.data_ptr(), t.bytes.size());
    } else if (source->dtype == v.dtype) {
      t.bytes.assign(source->data, source->data + source->nbytes);
    } else {  // a projector override in another dtype: convert through float32
      std::vector<float> f(static_cast<std::size_t>(source->numel()));
      to_float32(*source, f.data());
      at::ScalarType target = v.dtype == DType::bf16 ? at::kBFloat16 : v.dtype == DType::f16 ? at::kHalf : at::kFloat;
      at::Tensor out = at::from_blob(f.data(), v.shape, at::kFloat).to(target).contiguous();
      t.bytes.resize(std::size_t(out.numel()) * out.element_size());
      std::memcpy(t.bytes.data(), out.data_ptr(), t.bytes.size());
    }
    tensors.push_back(std::move(t));
  }
  fs::create_directories(out_dir);
  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  for (const char* file : {"config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                           "preprocessor_config.json", "generation_config.json"})
    if (fs::exists(fs::path(base_dir) / file))
      fs::copy_file(fs::path(base_dir) / file, fs::path(out_dir) / file);
  at::Tensor head = rm.score_weight().contiguous().cpu();
  std::vector<float> hv(head.data_ptr<float>(), head.data_ptr<float>() + head.numel());
  write_safetensors((fs::path(out_dir) / "score_head.safetensors").string(),
                    {float_tensor("score.weight", {1, head.numel()}, hv)});
  json config = {{"format", "align2-reward-model"}, {"version", 1}, {"kind", reward_kind_name(rm.config().kind)},
                 {"base_model", "."}, {"max_length", rm.config().max_length}};
  if (spec.vision_dir != spec.dir) config["vision_tower"] = fs::absolute(spec.vision_dir).lexically_normal().string();
  std::ofstream((fs::path(out_dir) / "reward_config.json").string()) << config.dump(2) << "\n";
}

}  // namespace align2
