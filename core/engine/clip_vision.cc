#include "core/engine/clip_vision.h"

#include <fmt/format.h>

#include <cmath>

#include "core/engine/llama_model.h"

namespace align2 {

ClipVisionTower::ClipVisionTower(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype,
                                 at::Device device)
    : cfg_(spec.vision), drop_cls_(spec.vision_drop_cls), dtype_(dtype), device_(device) {
  const ClipVisionConfig& c = cfg_;
  const std::int64_t H = c.hidden_size, I = c.intermediate_size, P = c.num_patches();
  // hidden_states has num_layers + 1 entries; a negative index counts from the end.
  int select = spec.vision_select_layer;
  int index = select < 0 ? int(c.num_layers) + 1 + select : select;
  if (index < 0 || index > c.num_layers)
    throw std::runtime_error(fmt::format("{}: vision select layer {} is outside 0..{}", spec.dir, select, c.num_layers));
  layers_to_run_ = index;
  auto load = [&](const std::string& canonical, std::vector<std::int64_t> shape) {
    return load_tensor(ckpt, spec.vision_weight(canonical), shape, dtype).to(device);
  };
  patch_w_ = load("embeddings.patch_embedding.weight", {H, c.num_channels, c.patch_size, c.patch_size});
  class_emb_ = load("embeddings.class_embedding", {H});
  pos_emb_ = load("embeddings.position_embedding.weight", {P + 1, H});
  pre_ln_w_ = load("pre_layrnorm.weight", {H});
  pre_ln_b_ = load("pre_layrnorm.bias", {H});
  for (int l = 0; l < layers_to_run_; ++l) {
    std::string p = fmt::format("encoder.layers.{}.", l);
    Layer L;
    L.ln1_w = load(p + "layer_norm1.weight", {H});
    L.ln1_b = load(p + "layer_norm1.bias", {H});
    L.q_w = load(p + "self_attn.q_proj.weight", {H, H});
    L.q_b = load(p + "self_attn.q_proj.bias", {H});
    L.k_w = load(p + "self_attn.k_proj.weight", {H, H});
    L.k_b = load(p + "self_attn.k_proj.bias", {H});
    L.v_w = load(p + "self_attn.v_proj.weight", {H, H});
    L.v_b = load(p + "self_attn.v_proj.bias", {H});
    L.o_w = load(p + "self_attn.out_proj.weight", {H, H});
    L.o_b = load(p + "self_attn.out_proj.bias", {H});
    L.ln2_w = load(p + "layer_norm2.weight", {H});
    L.ln2_b = load(p + "layer_norm2.bias", {H});
    L.fc1_w = load(p + "mlp.fc1.weight", {I, H});
    L.fc1_b = load(p + "mlp.fc1.bias", {I});
    L.fc2_w = load(p + "mlp.fc2.weight", {H, I});
    L.fc2_b = load(p + "mlp.fc2.bias", {H});
    layers_.push_back(std::move(L));
  }
}

at::Tensor ClipVisionTower::layer_forward(const Layer& L, const at::Tensor& x) const {
  const std::int64_t N = x.size(0), T = x.size(1), nh = cfg_.num_heads, hd = cfg_.hidden_size / nh;
  const double eps = cfg_.layer_norm_eps;
  at::Tensor h = at::layer_norm(x, {cfg_.hidden_size}, L.ln1_w, L.ln1_b, eps);
  at::Tensor q = dense_linear(h, L.q_w, L.q_b).view({N, T, nh, hd}).transpose(1, 2);
  at::Tensor k = dense_linear(h, L.k_w, L.k_b).view({N, T, nh, hd}).transpose(1, 2);
  at::Tensor v = dense_linear(h, L.v_w, L.v_b).view({N, T, nh, hd}).transpose(1, 2);
  at::Tensor scores = dense_matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(double(hd)));
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dtype_);
  at::Tensor attn = dense_matmul(probs, v).transpose(1, 2).reshape({N, T, cfg_.hidden_size});
  at::Tensor out = x + dense_linear(attn, L.o_w, L.o_b);
  at::Tensor m = dense_linear(at::layer_norm(out, {cfg_.hidden_size}, L.ln2_w, L.ln2_b, eps), L.fc1_w, L.fc1_b);
  m = cfg_.hidden_act == "quick_gelu" ? m * at::sigmoid(1.702 * m) : at::gelu(m);
  return out + dense_linear(m, L.fc2_w, L.fc2_b);
}

at::Tensor ClipVisionTower::forward(const at::Tensor& pixel_values) const {
  if (pixel_values.dim() != 4 || pixel_values.size(1) != cfg_.num_channels ||
      pixel_values.size(2) != cfg_.image_size || pixel_values.size(3) != cfg_.image_size)
    throw std::invalid_argument(fmt::format("vision tower expects pixel values [N, {}, {}, {}]", cfg_.num_channels,
                                            cfg_.image_size, cfg_.image_size));
  const std::int64_t N = pixel_values.size(0), H = cfg_.hidden_size;
  at::Tensor x = pixel_values.to(device_).to(dtype_);
  at::Tensor patches = at::conv2d(x, patch_w_, {}, {cfg_.patch_size, cfg_.patch_size});  // [N, H, g, g]
  patches = patches.flatten(2).transpose(1, 2);                                          // [N, P, H]
  at::Tensor cls = class_emb_.view({1, 1, H}).expand({N, 1, H});
  at::Tensor h = at::cat({cls, patches}, 1) + pos_emb_.unsqueeze(0);
  h = at::layer_norm(h, {H}, pre_ln_w_, pre_ln_b_, cfg_.layer_norm_eps);
  for (const Layer& L : layers_) h = layer_forward(L, h);
  return drop_cls_ ? h.narrow(1, 1, h.size(1) - 1) : h;
}

}  // namespace align2
