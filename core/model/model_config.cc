#include "core/model/model_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/model/safetensors.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::uintmax_t kMaxConfigBytes = 16u << 20;  // config.json / preprocessor_config.json
constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;  // bound on any size a config gives

// A parsed JSON file and its path, for messages.
struct ConfigFile {
  std::string path;
  json root;
};

ConfigFile read_config(const fs::path& p) {
  ConfigFile c{p.string(), {}};
  std::error_code ec;
  std::uintmax_t size = fs::file_size(p, ec);
  if (ec) throw std::runtime_error(fmt::format("{}: cannot read: {}", c.path, ec.message()));
  if (size > kMaxConfigBytes)
    throw std::runtime_error(fmt::format("{}: {} bytes, above the {} byte limit for a config", c.path, size,
                                         kMaxConfigBytes));
  std::ifstream in(p, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in || !in.read(text.data(), static_cast<std::streamsize>(size)))
    throw std::runtime_error(fmt::format("{}: cannot read", c.path));
  c.root = json::parse(text, nullptr, false);
  if (c.root.is_discarded()) throw std::runtime_error(c.path + ": not valid JSON");
  if (!c.root.is_object()) throw std::runtime_error(c.path + ": not a JSON object");
  return c;
}

[[noreturn]] void bad(const std::string& file, const std::string& key, const std::string& what) {
  throw std::runtime_error(fmt::format("{}: key \"{}\": {}", file, key, what));
}

// A config value for messages: flat values as JSON, at most 200 characters; nested ones
// by kind only (dumping is recursive, and a file may nest deeply).
std::string brief(const json& v) {
  if (v.is_structured())
    for (const json& x : v)
      if (x.is_structured()) return v.is_array() ? "a nested list" : "an object";
  std::string s = v.dump();
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

// Typed access to one object of a config file. `prefix` names the nested object in
// messages ("text_config." etc.). JSON null counts as absent (transformers writes
// "rope_scaling": null, "pad_token_id": null).
struct Keys {
  const std::string& file;
  const json& obj;
  std::string prefix;

  std::string key(const std::string& k) const { return prefix + k; }
  bool has(const std::string& k) const { return obj.contains(k) && !obj.at(k).is_null(); }
  const json& at(const std::string& k) const { return obj.at(k); }

  std::int64_t integer(const std::string& k, std::int64_t fallback) const {
    if (!has(k)) return fallback;
    const json& v = at(k);
    if (!v.is_number_integer()) bad(file, key(k), fmt::format("expected an integer, got {}", brief(v)));
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      bad(file, key(k), "integer out of range");
    return v.get<std::int64_t>();
  }
  // A size: an integer in [1, kMaxDim].
  std::int64_t size(const std::string& k, std::int64_t fallback) const {
    std::int64_t v = integer(k, fallback);
    if (v < 1 || v > kMaxDim) bad(file, key(k), fmt::format("{} is not a size in [1, {}]", v, kMaxDim));
    return v;
  }
  double number(const std::string& k, double fallback) const {
    if (!has(k)) return fallback;
    const json& v = at(k);
    if (!v.is_number()) bad(file, key(k), fmt::format("expected a number, got {}", brief(v)));
    double d = v.get<double>();
    if (!std::isfinite(d)) bad(file, key(k), "not a finite number");
    return d;
  }
  double positive(const std::string& k, double fallback) const {
    double d = number(k, fallback);
    if (!(d > 0)) bad(file, key(k), fmt::format("{} is not positive", d));
    return d;
  }
  bool boolean(const std::string& k, bool fallback) const {
    if (!has(k)) return fallback;
    if (!at(k).is_boolean()) bad(file, key(k), fmt::format("expected true or false, got {}", brief(at(k))));
    return at(k).get<bool>();
  }
  std::string string(const std::string& k, const std::string& fallback) const {
    if (!has(k)) return fallback;
    if (!at(k).is_string()) bad(file, key(k), fmt::format("expected a string, got {}", brief(at(k))));
    return at(k).get<std::string>();
  }
  // A nested object; absent or null gives an empty object.
  Keys object(const std::string& k, const json& empty) const {
    if (!has(k)) return Keys{file, empty, key(k) + "."};
    if (!at(k).is_object()) bad(file, key(k), fmt::format("expected an object, got {}", at(k).type_name()));
    return Keys{file, at(k), key(k) + "."};
  }
};

const json& empty_object() {
  static const json e = json::object();
  return e;
}

// The first entry of "architectures".
std::string architecture(const ConfigFile& c) {
  Keys k{c.path, c.root, ""};
  if (!k.has("architectures"))
    bad(c.path, "architectures", fmt::format("missing (model_type {}): cannot tell which model this is",
                                             brief(c.root.value("model_type", json("none")))));
  const json& a = k.at("architectures");
  if (!a.is_array() || a.empty() || !a[0].is_string())
    bad(c.path, "architectures", "expected a list naming the model class");
  return a[0].get<std::string>();
}

// transformers' LlamaConfig from the keys of `k` (top level, or text_config).
LlamaConfig parse_llama(const Keys& k) {
  if (k.has("model_type") && k.string("model_type", "") != "llama")
    bad(k.file, k.key("model_type"),
        fmt::format("\"{}\": only LLaMA language models are supported", k.string("model_type", "")));
  LlamaConfig c;
  c.hidden_size = k.size("hidden_size", 4096);
  c.intermediate_size = k.size("intermediate_size", 11008);
  c.num_layers = k.size("num_hidden_layers", 32);
  c.num_heads = k.size("num_attention_heads", 32);
  c.num_kv_heads = k.size("num_key_value_heads", c.num_heads);
  c.vocab_size = k.size("vocab_size", 32000);
  c.max_positions = k.size("max_position_embeddings", 2048);
  c.rms_norm_eps = k.positive("rms_norm_eps", 1e-6);
  c.rope_theta = k.positive("rope_theta", 10000.0);
  c.tie_word_embeddings = k.boolean("tie_word_embeddings", false);
  c.bos_token_id = k.integer("bos_token_id", 1);
  // Llama 3 style lists of end tokens: the first one.
  if (k.has("eos_token_id") && k.at("eos_token_id").is_array()) {
    const json& list = k.at("eos_token_id");
    if (list.empty() || !list[0].is_number_integer())
      bad(k.file, k.key("eos_token_id"), "expected an integer or a list of integers");
    c.eos_token_id = list[0].get<std::int64_t>();
  } else {
    c.eos_token_id = k.integer("eos_token_id", 2);
  }
  c.pad_token_id = k.integer("pad_token_id", -1);

  if (c.num_kv_heads > c.num_heads || c.num_heads % c.num_kv_heads != 0)
    bad(k.file, k.key("num_key_value_heads"),
        fmt::format("{} does not divide num_attention_heads {}", c.num_kv_heads, c.num_heads));
  if (k.has("head_dim")) {
    c.head_dim = k.size("head_dim", 0);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      bad(k.file, k.key("num_attention_heads"),
          fmt::format("{} does not divide hidden_size {}", c.num_heads, c.hidden_size));
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) bad(k.file, k.key("head_dim"), fmt::format("RoPE needs an even head_dim, got {}", c.head_dim));

  // Settings the engine does not implement: refuse rather than compute something else.
  std::string act = k.string("hidden_act", "silu");
  if (act != "silu") bad(k.file, k.key("hidden_act"), fmt::format("\"{}\": only silu (SwiGLU) is supported", act));
  if (k.has("rope_scaling"))
    bad(k.file, k.key("rope_scaling"),
        fmt::format("{}: RoPE scaling is not supported (only plain RoPE)", brief(k.at("rope_scaling"))));
  if (k.has("rope_parameters")) {  // transformers 5.x: {"rope_type": "default", "rope_theta": ...}
    Keys rp = k.object("rope_parameters", empty_object());
    std::string type = rp.string("rope_type", rp.string("type", "default"));
    if (type != "default")
      bad(k.file, rp.key("rope_type"), fmt::format("\"{}\": only plain RoPE (\"default\") is supported", type));
    c.rope_theta = rp.positive("rope_theta", c.rope_theta);
  }
  if (k.boolean("attention_bias", false))
    bad(k.file, k.key("attention_bias"), "true: attention projections with bias are not supported");
  if (k.boolean("mlp_bias", false)) bad(k.file, k.key("mlp_bias"), "true: MLP projections with bias are not supported");
  return c;
}

// transformers' CLIPVisionConfig from the keys of `k`; `defaults` gives the values of
// absent keys (CLIPVisionConfig's own, or LlavaConfig's CLIP-L/336 set).
ClipVisionConfig parse_clip_vision(const Keys& k, const ClipVisionConfig& defaults) {
  if (k.has("model_type") && k.string("model_type", "") != "clip_vision_model")
    bad(k.file, k.key("model_type"),
        fmt::format("\"{}\": only CLIP vision towers (clip_vision_model) are supported", k.string("model_type", "")));
  ClipVisionConfig c = defaults;
  c.hidden_size = k.size("hidden_size", defaults.hidden_size);
  c.intermediate_size = k.size("intermediate_size", defaults.intermediate_size);
  c.num_layers = k.size("num_hidden_layers", defaults.num_layers);
  c.num_heads = k.size("num_attention_heads", defaults.num_heads);
  c.image_size = k.size("image_size", defaults.image_size);
  c.patch_size = k.size("patch_size", defaults.patch_size);
  c.num_channels = k.size("num_channels", defaults.num_channels);
  c.layer_norm_eps = k.positive("layer_norm_eps", defaults.layer_norm_eps);
  c.hidden_act = k.string("hidden_act", defaults.hidden_act);
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    bad(k.file, k.key("hidden_act"), fmt::format("\"{}\": only quick_gelu and gelu are supported", c.hidden_act));
  if (c.hidden_size % c.num_heads != 0)
    bad(k.file, k.key("num_attention_heads"),
        fmt::format("{} does not divide hidden_size {}", c.num_heads, c.hidden_size));
  if (c.image_size % c.patch_size != 0)
    bad(k.file, k.key("patch_size"), fmt::format("{} does not divide image_size {}", c.patch_size, c.image_size));
  if (c.num_channels != 3) bad(k.file, k.key("num_channels"), fmt::format("{}: only RGB (3) is supported", c.num_channels));
  return c;
}

ClipVisionConfig clip_defaults() { return ClipVisionConfig{}; }

// LlavaConfig's vision tower when config.json has no vision_config (CLIP ViT-L/14-336).
ClipVisionConfig llava_hf_vision_defaults() {
  ClipVisionConfig c;
  c.hidden_size = 1024;
  c.intermediate_size = 4096;
  c.num_layers = 24;
  c.num_heads = 16;
  c.image_size = 336;
  c.patch_size = 14;
  return c;
}

// The vision half of a CLIPModel config.json: vision_config, overridden by the older
// vision_config_dict when present (as CLIPConfig does: it rebuilds the whole vision
// config from vision_config_dict with CLIPVisionConfig's defaults).
ClipVisionConfig parse_clip_model_vision(const ConfigFile& c) {
  Keys top{c.path, c.root, ""};
  if (top.has("vision_config_dict"))
    return parse_clip_vision(top.object("vision_config_dict", empty_object()), clip_defaults());
  return parse_clip_vision(top.object("vision_config", empty_object()), clip_defaults());
}

// Image mean/std (and a size check) from `dir`/preprocessor_config.json when present.
void read_preprocessor(const fs::path& dir, ClipVisionConfig* v) {
  fs::path p = dir / "preprocessor_config.json";
  if (!fs::exists(p)) return;
  ConfigFile c = read_config(p);
  Keys k{c.path, c.root, ""};
  auto triple = [&](const std::string& key, std::vector<float>* out, bool positive) {
    if (!k.has(key)) return;
    const json& a = k.at(key);
    std::vector<float> values;
    if (a.is_number()) values.assign(static_cast<std::size_t>(v->num_channels), a.get<float>());
    else if (a.is_array() && a.size() == static_cast<std::size_t>(v->num_channels))
      for (const json& x : a) {
        if (!x.is_number()) bad(c.path, key, "expected numbers");
        values.push_back(x.get<float>());
      }
    else bad(c.path, key, fmt::format("expected {} numbers, got {}", v->num_channels, brief(a)));
    for (float x : values)
      if (!std::isfinite(x) || (positive && !(x > 0))) bad(c.path, key, fmt::format("{} is out of range", brief(a)));
    *out = values;
  };
  triple("image_mean", &v->image_mean, false);
  triple("image_std", &v->image_std, true);

  // crop_size: 336 (old CLIPFeatureExtractor) or {"height": 336, "width": 336}; the
  // vision tower only takes image_size x image_size.
  if (k.has("crop_size")) {
    const json& cs = k.at("crop_size");
    std::int64_t h = -1, w = -1;
    if (cs.is_number_integer()) h = w = cs.get<std::int64_t>();
    else if (cs.is_object()) {
      Keys ck = k.object("crop_size", empty_object());
      h = ck.integer("height", -1);
      w = ck.integer("width", -1);
    } else bad(c.path, "crop_size", fmt::format("expected an integer or {{height, width}}, got {}", brief(cs)));
    if (h != v->image_size || w != v->image_size)
      bad(c.path, "crop_size",
          fmt::format("{} does not match the vision tower's image_size {}", brief(cs), v->image_size));
  }
  // size: the shortest edge is resized to image_size before the center crop.
  if (k.has("size")) {
    const json& s = k.at("size");
    std::int64_t edge = -1;
    if (s.is_number_integer()) edge = s.get<std::int64_t>();
    else if (s.is_object() && s.contains("shortest_edge")) edge = k.object("size", empty_object()).integer("shortest_edge", -1);
    if (edge != v->image_size)
      bad(c.path, "size", fmt::format("{}: only resizing the shortest edge to image_size {} is supported", brief(s),
                                      v->image_size));
  }
}

// Checks a vision feature layer index against [embeddings, layer 1, ..., layer L].
void check_select_layer(const std::string& file, const std::string& key, std::int64_t layer,
                        const ClipVisionConfig& v) {
  if (layer < -(v.num_layers + 1) || layer > v.num_layers)
    bad(file, key,
        fmt::format("{} is outside the {} hidden states of a {}-layer vision tower", layer, v.num_layers + 1,
                    v.num_layers));
}

// Where the Hugging Face hub cache lives, as huggingface_hub resolves it.
fs::path hf_hub_cache() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HF_HOME"); h && *h) return fs::path(h) / "hub";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "huggingface" / "hub";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "huggingface" / "hub";
  return {};
}

bool is_model_folder(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::exists(p / "config.json", ec);
}

// The liuhaotian vision tower folder (order documented in model_config.h).
std::string resolve_vision_tower(const fs::path& dir, const std::string& config_path, const std::string& key,
                                 const std::string& tower, const std::string& explicit_dir) {
  if (!explicit_dir.empty()) {
    if (!is_model_folder(explicit_dir))
      throw std::runtime_error(fmt::format("vision tower folder {}: not a folder with config.json", explicit_dir));
    return explicit_dir;
  }
  std::vector<std::string> tried;
  if (is_model_folder(tower)) return tower;
  tried.push_back(tower);

  std::string last = fs::path(tower).lexically_normal().filename().string();
  if (last.empty()) last = fs::path(tower).lexically_normal().parent_path().filename().string();
  if (!last.empty() && last != "." && last != "..") {
    fs::path abs = fs::absolute(dir).lexically_normal();
    if (abs.filename().empty()) abs = abs.parent_path();
    for (const fs::path& p : {abs.parent_path() / last, abs / last}) {
      if (is_model_folder(p)) return p.string();
      tried.push_back(p.string());
    }
  }
  // Hub cache: models--<org>--<name>/snapshots/<commit>, the commit from refs/main.
  fs::path cache = hf_hub_cache();
  if (!cache.empty() && tower.find("..") == std::string::npos && !fs::path(tower).is_absolute()) {
    std::string repo = "models--" + tower;
    for (std::size_t i = 0; (i = repo.find('/', i)) != std::string::npos;) repo.replace(i, 1, "--");
    fs::path snapshots = cache / repo / "snapshots";
    tried.push_back((snapshots / "*").string());
    std::error_code ec;
    std::string main_commit;
    if (std::ifstream ref(cache / repo / "refs" / "main"); ref) std::getline(ref, main_commit);
    if (!main_commit.empty() && main_commit.find('/') == std::string::npos && main_commit != ".." &&
        is_model_folder(snapshots / main_commit))
      return (snapshots / main_commit).string();
    std::vector<std::string> found;
    if (fs::is_directory(snapshots, ec))
      for (const auto& e : fs::directory_iterator(snapshots, ec))
        if (is_model_folder(e.path())) found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    if (found.size() == 1) return found[0];
    if (found.size() > 1)
      throw std::runtime_error(fmt::format(
          "{}: key \"{}\": \"{}\" has several snapshots in the Hugging Face cache ({}) and refs/main names none of "
          "them; give the vision tower folder explicitly",
          config_path, key, tower, fmt::join(found, ", ")));
  }
  throw std::runtime_error(fmt::format(
      "{}: key \"{}\": vision tower \"{}\" not found (looked in: {}); download it (e.g. huggingface-cli download {}) "
      "or give its folder explicitly",
      config_path, key, tower, fmt::join(tried, ", "), tower));
}

// A CLIPModel or CLIPVisionModel folder: its layout and vision config (with preprocessing).
void load_clip_folder(const std::string& dir, ModelLayout* layout, ClipVisionConfig* vision) {
  ConfigFile c = read_config(fs::path(dir) / "config.json");
  std::string arch = architecture(c);
  if (arch == "CLIPModel") {
    *layout = ModelLayout::clip_model;
    *vision = parse_clip_model_vision(c);
  } else if (arch == "CLIPVisionModel" || arch == "CLIPVisionModelWithProjection") {
    *layout = ModelLayout::clip_vision;
    Keys top{c.path, c.root, ""};
    // A vision model saved from a full CLIP config keeps its vision_config nested.
    *vision = top.has("vision_config") ? parse_clip_vision(top.object("vision_config", empty_object()), clip_defaults())
                                       : parse_clip_vision(top, clip_defaults());
  } else {
    bad(c.path, "architectures", fmt::format("\"{}\": a vision tower must be CLIPModel or CLIPVisionModel", arch));
  }
  read_preprocessor(dir, vision);
}

}  // namespace

const char* layout_name(ModelLayout l) {
  switch (l) {
    case ModelLayout::llama: return "LlamaForCausalLM";
    case ModelLayout::llava_liuhaotian: return "LlavaLlamaForCausalLM (liuhaotian)";
    case ModelLayout::llava_hf4: return "LlavaForConditionalGeneration (transformers 4.x names)";
    case ModelLayout::llava_hf5: return "LlavaForConditionalGeneration (transformers 5.x names)";
    case ModelLayout::clip_model: return "CLIPModel";
    case ModelLayout::clip_vision: return "CLIPVisionModel";
  }
  return "?";
}

std::string ModelSpec::llm_weight(const std::string& canonical) const {
  if (!has_llm) throw std::logic_error(fmt::format("{}: {} has no language model", dir, layout_name(layout)));
  std::string c = canonical;
  if (c == "lm_head.weight" && llm.tie_word_embeddings) c = "embed_tokens.weight";
  const bool head = c == "lm_head.weight";
  switch (layout) {
    case ModelLayout::llama:
    case ModelLayout::llava_liuhaotian: return head ? c : "model." + c;
    case ModelLayout::llava_hf4: return head ? "language_model.lm_head.weight" : "language_model.model." + c;
    case ModelLayout::llava_hf5: return head ? "lm_head.weight" : "model.language_model." + c;
    default: break;
  }
  throw std::logic_error(fmt::format("{}: {} has no language model", dir, layout_name(layout)));
}

std::string ModelSpec::vision_weight(const std::string& canonical) const {
  if (!has_vision) throw std::logic_error(fmt::format("{}: {} has no vision tower", dir, layout_name(layout)));
  switch (vision_layout) {
    case ModelLayout::clip_model:
    case ModelLayout::clip_vision: return "vision_model." + canonical;
    case ModelLayout::llava_hf4: return "vision_tower.vision_model." + canonical;
    case ModelLayout::llava_hf5: return "model.vision_tower.vision_model." + canonical;
    default: break;
  }
  throw std::logic_error(fmt::format("{}: vision layout {} holds no vision tower", dir, layout_name(vision_layout)));
}

std::string ModelSpec::projector_weight(int layer, const std::string& kind) const {
  if (!has_projector) throw std::logic_error(fmt::format("{}: {} has no projector", dir, layout_name(layout)));
  const int layers = projector == ProjectorType::linear ? 1 : 2;
  if (layer < 0 || layer >= layers || (kind != "weight" && kind != "bias"))
    throw std::logic_error(fmt::format("projector_weight({}, {}): the projector has {} linear layer(s)", layer, kind,
                                       layers));
  switch (layout) {
    case ModelLayout::llava_liuhaotian:
      // nn.Linear itself for "linear"; nn.Sequential(Linear, GELU, Linear) for mlp2x_gelu.
      return projector == ProjectorType::linear ? "model.mm_projector." + kind
                                                : fmt::format("model.mm_projector.{}.{}", layer == 0 ? 0 : 2, kind);
    case ModelLayout::llava_hf4: return fmt::format("multi_modal_projector.linear_{}.{}", layer + 1, kind);
    case ModelLayout::llava_hf5: return fmt::format("model.multi_modal_projector.linear_{}.{}", layer + 1, kind);
    default: break;
  }
  throw std::logic_error(fmt::format("{}: {} has no projector", dir, layout_name(layout)));
}

ModelSpec load_model_spec(const std::string& dir, const std::string& vision_tower_dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(fmt::format("{}: not a model folder", dir));
  const fs::path config_path = fs::path(dir) / "config.json";
  if (!fs::exists(config_path)) throw std::runtime_error(fmt::format("{}: no config.json in the model folder", dir));
  ConfigFile c = read_config(config_path);
  Keys top{c.path, c.root, ""};
  const std::string arch = architecture(c);

  ModelSpec spec;
  spec.dir = dir;

  if (arch == "LlamaForCausalLM") {
    spec.layout = ModelLayout::llama;
    spec.has_llm = true;
    spec.llm = parse_llama(top);
    return spec;
  }

  if (arch == "LlavaLlamaForCausalLM") {
    spec.layout = ModelLayout::llava_liuhaotian;
    spec.has_llm = true;
    // The LLaMA keys sit at the top level (model_type is "llava", so it is not checked).
    json llama_keys = c.root;
    llama_keys.erase("model_type");
    spec.llm = parse_llama(Keys{c.path, llama_keys, ""});

    spec.has_projector = true;
    spec.image_token_index = -200;  // llava/constants.py IMAGE_TOKEN_INDEX
    const std::string ptype = top.string("mm_projector_type", "linear");
    if (ptype == "linear") spec.projector = ProjectorType::linear;
    else if (ptype == "mlp2x_gelu") spec.projector = ProjectorType::mlp2x_gelu;
    else
      bad(c.path, "mm_projector_type",
          fmt::format("\"{}\": only \"linear\" and \"mlp2x_gelu\" (LLaVA-1.5) projectors are supported", ptype));

    const std::string feature = top.string("mm_vision_select_feature", "patch");
    if (feature == "patch") spec.vision_drop_cls = true;
    else if (feature == "cls_patch") spec.vision_drop_cls = false;
    else bad(c.path, "mm_vision_select_feature", fmt::format("\"{}\": expected \"patch\" or \"cls_patch\"", feature));
    if (!top.has("mm_vision_select_layer")) bad(c.path, "mm_vision_select_layer", "missing");
    const std::int64_t select = top.integer("mm_vision_select_layer", -2);

    // llava/mm_utils.py process_images: "pad" pads to a square; anything else but
    // "anyres" is the plain CLIP processor (resize the short side, center crop).
    const std::string aspect = top.string("image_aspect_ratio", "square");
    if (aspect == "pad" || aspect == "square") spec.image_aspect_ratio = aspect;
    else bad(c.path, "image_aspect_ratio", fmt::format("\"{}\": only \"pad\" and \"square\" are supported", aspect));
    const std::string merge = top.string("mm_patch_merge_type", "flat");
    if (merge != "flat") bad(c.path, "mm_patch_merge_type", fmt::format("\"{}\": only \"flat\" is supported", merge));
    if (top.boolean("mm_use_im_start_end", false))
      bad(c.path, "mm_use_im_start_end", "true: <im_start>/<im_end> image tokens are not supported");
    if (top.boolean("unfreeze_mm_vision_tower", false))
      bad(c.path, "unfreeze_mm_vision_tower", "true: a fine-tuned vision tower inside the checkpoint is not supported");

    std::string tower_key = top.has("mm_vision_tower") ? "mm_vision_tower" : "vision_tower";
    if (!top.has(tower_key)) bad(c.path, "mm_vision_tower", "missing: which CLIP vision tower to use");
    const std::string tower = top.string(tower_key, "");
    spec.vision_dir = resolve_vision_tower(dir, c.path, tower_key, tower, vision_tower_dir);
    load_clip_folder(spec.vision_dir, &spec.vision_layout, &spec.vision);
    spec.has_vision = true;
    check_select_layer(c.path, "mm_vision_select_layer", select, spec.vision);
    spec.vision_select_layer = static_cast<int>(select);
    const std::int64_t mm_hidden = top.size("mm_hidden_size", spec.vision.hidden_size);
    if (mm_hidden != spec.vision.hidden_size)
      bad(c.path, "mm_hidden_size",
          fmt::format("{} differs from the hidden_size {} of the vision tower in {}", mm_hidden,
                      spec.vision.hidden_size, spec.vision_dir));
    return spec;
  }

  if (arch == "LlavaForConditionalGeneration") {
    spec.has_llm = spec.has_vision = spec.has_projector = true;
    spec.llm = parse_llama(top.object("text_config", empty_object()));
    // LlavaConfig forwards a tied text config to the top level; either one ties.
    spec.llm.tie_word_embeddings = spec.llm.tie_word_embeddings || top.boolean("tie_word_embeddings", false);
    if (spec.llm.pad_token_id < 0) spec.llm.pad_token_id = top.integer("pad_token_id", -1);
    spec.vision = top.has("vision_config")
                      ? parse_clip_vision(top.object("vision_config", empty_object()), clip_defaults())
                      : llava_hf_vision_defaults();
    spec.image_token_index = top.integer("image_token_index", top.integer("image_token_id", 32000));
    const std::string act = top.string("projector_hidden_act", "gelu");
    if (act != "gelu") bad(c.path, "projector_hidden_act", fmt::format("\"{}\": only gelu is supported", act));
    spec.projector = ProjectorType::mlp2x_gelu;
    if (!top.boolean("multimodal_projector_bias", true))
      bad(c.path, "multimodal_projector_bias", "false: projectors without bias are not supported");
    const std::string strategy = top.string("vision_feature_select_strategy", "default");
    if (strategy == "default") spec.vision_drop_cls = true;
    else if (strategy == "full") spec.vision_drop_cls = false;
    else bad(c.path, "vision_feature_select_strategy", fmt::format("\"{}\": expected \"default\" or \"full\"", strategy));
    if (top.has("vision_feature_layer") && !top.at("vision_feature_layer").is_number_integer())
      bad(c.path, "vision_feature_layer",
          fmt::format("{}: only one feature layer (an integer) is supported", brief(top.at("vision_feature_layer"))));
    const std::int64_t select = top.integer("vision_feature_layer", -2);
    check_select_layer(c.path, "vision_feature_layer", select, spec.vision);
    spec.vision_select_layer = static_cast<int>(select);
    spec.vision_dir = dir;
    read_preprocessor(dir, &spec.vision);
    // transformers' CLIPImageProcessor resizes and center-crops; it pads only when told to.
    spec.image_aspect_ratio = "square";
    if (fs::exists(fs::path(dir) / "preprocessor_config.json")) {
      ConfigFile pre = read_config(fs::path(dir) / "preprocessor_config.json");
      Keys pk{pre.path, pre.root, ""};
      if (pk.boolean("do_pad", false)) spec.image_aspect_ratio = "pad";
    }

    // Which transformers version saved the tensors.
    Checkpoint ckpt(dir);
    const bool v4 = ckpt.has("language_model.model.embed_tokens.weight");
    const bool v5 = ckpt.has("model.language_model.embed_tokens.weight");
    if (v4 == v5)
      throw std::runtime_error(fmt::format(
          "{}: cannot tell the tensor names apart: expected language_model.model.embed_tokens.weight "
          "(transformers 4.x) or model.language_model.embed_tokens.weight (5.x){}",
          dir, v4 ? ", found both" : ", found neither"));
    spec.layout = spec.vision_layout = v4 ? ModelLayout::llava_hf4 : ModelLayout::llava_hf5;
    return spec;
  }

  if (arch == "CLIPModel" || arch == "CLIPVisionModel" || arch == "CLIPVisionModelWithProjection") {
    load_clip_folder(dir, &spec.layout, &spec.vision);
    spec.has_vision = true;
    spec.vision_dir = dir;
    spec.vision_layout = spec.layout;
    return spec;
  }

  bad(c.path, "architectures",
      fmt::format("\"{}\" is not supported (LlamaForCausalLM, LlavaLlamaForCausalLM, LlavaForConditionalGeneration, "
                  "CLIPModel, CLIPVisionModel are)",
                  arch));
}

ImageSpec image_spec_for(const ModelSpec& spec) {
  ImageSpec image;
  image.size = spec.vision.image_size;
  image.mean = spec.vision.image_mean;
  image.std = spec.vision.image_std;
  image.aspect = spec.image_aspect_ratio == "pad" ? AspectMode::pad : AspectMode::square;
  return image;
}

}  // namespace align2
