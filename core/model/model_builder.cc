#include "core/model/model_builder.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "core/model/model_config.h"
#include "core/util/splitmix64.h"
#include "core/model/safetensors.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// FNV-1a 64 of a tensor name: with the seed, the tensor's own stream.
std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Random tensors, each drawn from its own stream (seed, name).
struct Initialiser {
  std::uint64_t seed;
  std::vector<TensorData> tensors;
  std::int64_t parameters = 0;

  static std::int64_t numel(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (std::int64_t s : shape) n *= s;
    return n;
  }
  // Uniform in [-bound, bound): 24-bit draws, exact in float.
  void uniform(const std::string& name, const std::vector<std::int64_t>& shape, double bound) {
    SplitMix64 first(seed ^ name_hash(name));
    SplitMix64 rng(first.next());
    std::vector<float> v(static_cast<std::size_t>(numel(shape)));
    const float b = static_cast<float>(bound);
    for (float& x : v) {
      const float u = static_cast<float>(rng.next() >> 40) * 0x1.0p-24f;  // [0, 1)
      x = (2.0f * u - 1.0f) * b;
    }
    add(name, shape, v);
  }
  // The uniform of standard deviation `std` (a normal N(0, std) in the reference init).
  void normal_like(const std::string& name, const std::vector<std::int64_t>& shape, double std) {
    uniform(name, shape, std * std::sqrt(3.0));
  }
  void constant(const std::string& name, const std::vector<std::int64_t>& shape, float value) {
    add(name, shape, std::vector<float>(static_cast<std::size_t>(numel(shape)), value));
  }
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& values) {
    tensors.push_back(float_tensor(name, shape, values));
    parameters += numel(shape);
  }
};

void write_json(const fs::path& path, const json& j) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("{}: cannot open for writing", tmp.string()));
    out << j.dump(2) << "\n";
    out.close();
    if (!out) throw std::runtime_error(fmt::format("{}: write error", tmp.string()));
  }
  fs::rename(tmp, path);
}

json read_json_object(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read", path.string()));
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error(fmt::format("{}: not a JSON object", path.string()));
  return j;
}

void copy_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
  fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read,
                  ec);  // a read-only source stays writable in the copy
}

void check_options(const LlavaBuildOptions& o) {
  auto positive = [](const char* what, std::int64_t v) {
    if (v < 1 || v > (std::int64_t{1} << 20))
      throw std::invalid_argument(fmt::format("{} {}: expected a size in [1, {}]", what, v, std::int64_t{1} << 20));
  };
  positive("vision layers", o.vision_layers);
  positive("vision hidden size", o.vision_hidden);
  if (o.vision_intermediate != 0) positive("vision intermediate size", o.vision_intermediate);
  positive("vision heads", o.vision_heads);
  positive("image size", o.image_size);
  positive("patch size", o.patch_size);
  if (o.vision_hidden % o.vision_heads != 0)
    throw std::invalid_argument(
        fmt::format("vision heads {} do not divide the vision hidden size {}", o.vision_heads, o.vision_hidden));
  if (o.image_size % o.patch_size != 0)
    throw std::invalid_argument(
        fmt::format("patch size {} does not divide the image size {}", o.patch_size, o.image_size));
  if (o.llm_dir.empty()) throw std::invalid_argument("no LLM folder given");
  if (o.output_dir.empty()) throw std::invalid_argument("no output folder given");
}

}  // namespace

LlavaBuildResult build_llava(const LlavaBuildOptions& o) {
  check_options(o);
  const std::int64_t V = o.vision_hidden, L = o.vision_layers;
  const std::int64_t I = o.vision_intermediate ? o.vision_intermediate : 4 * V;
  const std::int64_t grid = o.image_size / o.patch_size, patches = grid * grid;

  // The LLaMA: must load as one (its config parsed as the engine will parse it).
  const ModelSpec llm = load_model_spec(o.llm_dir);
  if (llm.layout != ModelLayout::llama)
    throw std::runtime_error(fmt::format("{}: a {} folder; make-llava starts from a LlamaForCausalLM folder", o.llm_dir,
                                         layout_name(llm.layout)));
  const fs::path llm_dir(o.llm_dir);
  if (!fs::is_regular_file(llm_dir / "tokenizer.model"))
    throw std::runtime_error(fmt::format("{}: no tokenizer.model (the SentencePiece model the LLaVA folder needs)",
                                         o.llm_dir));
  const std::int64_t positions = o.max_positions ? o.max_positions : llm.llm.max_positions;
  if (2 * patches > positions)
    throw std::invalid_argument(fmt::format(
        "an image would take {} positions ((image size {} / patch size {})²), above half the {} positions of {}: "
        "use a smaller image size or a larger patch size",
        patches, o.image_size, o.patch_size, positions, o.llm_dir));

  const fs::path out(o.output_dir);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) throw std::runtime_error(fmt::format("{}: exists and is not a folder", o.output_dir));
    if (!fs::is_empty(out, ec)) throw std::runtime_error(fmt::format("{}: not empty; give a new or empty folder", o.output_dir));
  }
  const fs::path vision_dir = out / kBuiltVisionTowerName;
  fs::create_directories(vision_dir, ec);
  if (ec) throw std::runtime_error(fmt::format("{}: cannot create: {}", vision_dir.string(), ec.message()));

  // The vision tower (transformers' CLIP init, uniform draws of the same std).
  Initialiser vis{o.seed ^ 0x5649534fULL, {}, 0};  // "VISO"
  const double range = 0.02;
  const double in_proj_std = std::pow(double(V), -0.5) * std::pow(2.0 * double(L), -0.5);
  const double out_proj_std = std::pow(double(V), -0.5);
  const double fc_std = std::pow(2.0 * double(V), -0.5);
  vis.normal_like("vision_model.embeddings.class_embedding", {V}, std::pow(double(V), -0.5));
  vis.normal_like("vision_model.embeddings.patch_embedding.weight", {V, 3, o.patch_size, o.patch_size}, range);
  vis.normal_like("vision_model.embeddings.position_embedding.weight", {patches + 1, V}, range);
  vis.constant("vision_model.pre_layrnorm.weight", {V}, 1.0f);
  vis.constant("vision_model.pre_layrnorm.bias", {V}, 0.0f);
  for (std::int64_t l = 0; l < L; ++l) {
    const std::string p = fmt::format("vision_model.encoder.layers.{}.", l);
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      vis.normal_like(p + "self_attn." + proj + ".weight", {V, V}, in_proj_std);
      vis.constant(p + "self_attn." + proj + ".bias", {V}, 0.0f);
    }
    vis.normal_like(p + "self_attn.out_proj.weight", {V, V}, out_proj_std);
    vis.constant(p + "self_attn.out_proj.bias", {V}, 0.0f);
    vis.constant(p + "layer_norm1.weight", {V}, 1.0f);
    vis.constant(p + "layer_norm1.bias", {V}, 0.0f);
    vis.constant(p + "layer_norm2.weight", {V}, 1.0f);
    vis.constant(p + "layer_norm2.bias", {V}, 0.0f);
    vis.normal_like(p + "mlp.fc1.weight", {I, V}, fc_std);
    vis.constant(p + "mlp.fc1.bias", {I}, 0.0f);
    vis.normal_like(p + "mlp.fc2.weight", {V, I}, in_proj_std);
    vis.constant(p + "mlp.fc2.bias", {V}, 0.0f);
  }
  vis.constant("vision_model.post_layernorm.weight", {V}, 1.0f);
  vis.constant("vision_model.post_layernorm.bias", {V}, 0.0f);

  const json vision_config = {{"architectures", {"CLIPVisionModel"}},
                              {"model_type", "clip_vision_model"},
                              {"hidden_size", V},
                              {"intermediate_size", I},
                              {"num_hidden_layers", L},
                              {"num_attention_heads", o.vision_heads},
                              {"image_size", o.image_size},
                              {"patch_size", o.patch_size},
                              {"num_channels", 3},
                              {"hidden_act", "quick_gelu"},
                              {"layer_norm_eps", 1e-5},
                              {"initializer_range", range},
                              {"initializer_factor", 1.0},
                              {"torch_dtype", "float32"}};
  const json preprocessor = {{"crop_size", {{"height", o.image_size}, {"width", o.image_size}}},
                             {"size", {{"shortest_edge", o.image_size}}},
                             {"do_center_crop", true},
                             {"do_normalize", true},
                             {"do_resize", true},
                             {"do_rescale", true},
                             {"do_convert_rgb", true},
                             {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                             {"image_std", {0.26862954, 0.26130258, 0.27577711}},
                             {"resample", 3},
                             {"rescale_factor", 1.0 / 255},
                             {"image_processor_type", "CLIPImageProcessor"}};
  write_json(vision_dir / "config.json", vision_config);
  write_json(vision_dir / "preprocessor_config.json", preprocessor);
  write_safetensors((vision_dir / "model.safetensors").string(), vis.tensors, {{"format", "pt"}});

  // The LLaMA's tensors as they are, plus the projector (torch.nn.Linear's default init).
  const std::int64_t H = llm.llm.hidden_size;
  Initialiser proj{o.seed ^ 0x50524f4aULL, {}, 0};  // "PROJ"
  proj.uniform("model.mm_projector.0.weight", {H, V}, 1.0 / std::sqrt(double(V)));
  proj.uniform("model.mm_projector.0.bias", {H}, 1.0 / std::sqrt(double(V)));
  proj.uniform("model.mm_projector.2.weight", {H, H}, 1.0 / std::sqrt(double(H)));
  proj.uniform("model.mm_projector.2.bias", {H}, 1.0 / std::sqrt(double(H)));

  std::vector<TensorData> tensors;
  std::int64_t copied = 0;
  {
    Checkpoint ckpt(o.llm_dir);
    for (const std::string& name : ckpt.names()) {
      if (name.rfind("model.mm_projector.", 0) == 0)
        throw std::runtime_error(fmt::format("{}: already holds a projector tensor {}", o.llm_dir, name));
      const TensorView& t = ckpt.get(name);
      TensorData d;
      d.name = name;
      d.dtype = t.dtype;
      d.shape = t.shape;
      d.bytes.assign(t.data, t.data + t.nbytes);
      tensors.push_back(std::move(d));
      ++copied;
    }
  }
  for (TensorData& t : proj.tensors) tensors.push_back(std::move(t));

  json config = read_json_object(llm_dir / "config.json");
  for (const char* k : {"_name_or_path", "transformers_version"}) config.erase(k);
  config["architectures"] = {"LlavaLlamaForCausalLM"};
  config["model_type"] = "llava_llama";
  config["mm_vision_tower"] = kBuiltVisionTowerName;
  config["mm_hidden_size"] = V;
  config["mm_projector_type"] = "mlp2x_gelu";
  config["mm_vision_select_layer"] = -2;
  config["mm_vision_select_feature"] = "patch";
  config["mm_patch_merge_type"] = "flat";
  config["image_aspect_ratio"] = "pad";
  config["mm_use_im_start_end"] = false;
  config["mm_use_im_patch_token"] = false;
  if (o.max_positions) config["max_position_embeddings"] = o.max_positions;
  fs::path llm_abs = fs::absolute(llm_dir).lexically_normal();
  if (llm_abs.filename().empty()) llm_abs = llm_abs.parent_path();
  config["align2_make_llava"] = {{"language_model", llm_abs.filename().string()},
                                 {"seed", o.seed},
                                 {"note", "vision tower and projector freshly initialised (untrained)"}};
  write_json(out / "config.json", config);
  write_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
  copy_into(llm_dir / "tokenizer.model", out / "tokenizer.model");
  for (const char* extra : {"tokenizer_config.json", "special_tokens_map.json"})
    if (fs::is_regular_file(llm_dir / extra)) copy_into(llm_dir / extra, out / extra);

  LlavaBuildResult r;
  r.llava_dir = o.output_dir;
  r.vision_dir = vision_dir.string();
  r.image_tokens = patches;
  r.llm_max_positions = positions;
  r.llm_tensors = copied;
  r.new_parameters = vis.parameters + proj.parameters;
  return r;
}

}  // namespace align2
