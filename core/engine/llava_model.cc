#include "core/engine/llava_model.h"

#include <fmt/format.h>

namespace align2 {

Projector::Projector(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype, at::Device device,
                     const std::string& prefix)
    : dtype_(dtype) {
  if (!spec.has_projector) throw std::runtime_error(fmt::format("{}: this model has no projector", spec.dir));
  const std::int64_t Hv = spec.vision.hidden_size, H = spec.llm.hidden_size;
  auto load = [&](int layer, const char* kind, std::vector<std::int64_t> shape) {
    return load_tensor(ckpt, prefix + spec.projector_weight(layer, kind), shape, dtype).to(device);
  };
  w0_ = load(0, "weight", {H, Hv});
  b0_ = load(0, "bias", {H});
  if (spec.projector == ProjectorType::mlp2x_gelu) {
    w1_ = load(1, "weight", {H, H});
    b1_ = load(1, "bias", {H});
  }
}

void Projector::to(at::ScalarType dtype) {
  dtype_ = dtype;
  for (at::Tensor* t : {&w0_, &b0_, &w1_, &b1_})
    if (t->defined()) *t = t->to(dtype);
}

std::vector<std::pair<std::string, at::Tensor*>> Projector::parameters(const ModelSpec& spec) {
  std::vector<std::pair<std::string, at::Tensor*>> out = {{spec.projector_weight(0, "weight"), &w0_},
                                                          {spec.projector_weight(0, "bias"), &b0_}};
  if (w1_.defined()) {
    out.push_back({spec.projector_weight(1, "weight"), &w1_});
    out.push_back({spec.projector_weight(1, "bias"), &b1_});
  }
  return out;
}

at::Tensor Projector::forward(const at::Tensor& vision_hidden) const {
  at::Tensor x = dense_linear(vision_hidden.to(dtype_), w0_, b0_);
  if (w1_.defined()) x = dense_linear(at::gelu(x), w1_, b1_);
  return x;
}

LlavaModel::LlavaModel(const ModelSpec& spec, at::ScalarType dtype, at::Device device) : spec_(spec) {
  if (!spec.has_llm) throw std::runtime_error(fmt::format("{}: not a language model folder", spec.dir));
  Checkpoint ckpt(spec.dir);
  llm_ = std::make_unique<LlamaModel>(spec, ckpt, dtype, device);
  if (spec.has_vision) {
    std::unique_ptr<Checkpoint> other;
    if (spec.vision_dir != spec.dir) other = std::make_unique<Checkpoint>(spec.vision_dir);
    vision_ = std::make_unique<ClipVisionTower>(spec, other ? *other : ckpt, dtype, device);
  }
  if (spec.has_projector) projector_ = std::make_unique<Projector>(spec, ckpt, dtype, device);
}

void LlavaModel::replace_projector(const Checkpoint& ckpt, const std::string& prefix) {
  projector_ = std::make_unique<Projector>(spec_, ckpt, llm_->dtype(), llm_->device(), prefix);
}

const ClipVisionTower& LlavaModel::vision() const {
  if (!vision_) throw std::runtime_error(fmt::format("{}: this model has no vision tower", spec_.dir));
  return *vision_;
}

at::Tensor LlavaModel::encode_images(const at::Tensor& pixel_values) const { return vision().forward(pixel_values); }

at::Tensor LlavaModel::project(const at::Tensor& vision_hidden) const {
  if (!projector_) throw std::runtime_error(fmt::format("{}: this model has no projector", spec_.dir));
  return projector_->forward(vision_hidden);
}

at::Tensor LlavaModel::splice(const std::vector<std::int64_t>& ids, const std::vector<at::Tensor>& images) const {
  std::vector<at::Tensor> parts;
  std::vector<std::int64_t> text;
  std::size_t used = 0;
  auto flush = [&] {
    if (text.empty()) return;
    at::Tensor t = at::tensor(text, at::TensorOptions().dtype(at::kLong)).view({1, -1});
    parts.push_back(llm_->embed(t).squeeze(0));
    text.clear();
  };
  for (std::int64_t id : ids) {
    if (id != spec_.image_token_index) {
      if (id < 0 || id >= spec_.llm.vocab_size)
        throw std::invalid_argument(fmt::format("token id {} outside the vocabulary of {}", id, spec_.llm.vocab_size));
      text.push_back(id);
      continue;
    }
    flush();
    if (used >= images.size())
      throw std::invalid_argument(fmt::format("{} image placeholders but {} images", used + 1, images.size()));
    parts.push_back(images[used++].to(llm_->dtype()));
  }
  flush();
  if (used != images.size())
    throw std::invalid_argument(fmt::format("{} image placeholders but {} images", used, images.size()));
  if (parts.empty()) throw std::invalid_argument("empty sequence");
  return at::cat(parts, 0);
}

at::Tensor LlavaModel::last_hidden(const std::vector<at::Tensor>& sequences) const {
  const std::int64_t B = std::int64_t(sequences.size()), H = spec_.llm.hidden_size;
  std::int64_t T = 0;
  std::vector<std::int64_t> lens;
  for (const at::Tensor& s : sequences) {
    lens.push_back(s.size(0));
    T = std::max(T, s.size(0));
  }
  at::Tensor embeds = at::zeros({B, T, H}, at::TensorOptions().dtype(llm_->dtype()).device(llm_->device()));
  for (std::int64_t b = 0; b < B; ++b) embeds[b].narrow(0, 0, lens[std::size_t(b)]).copy_(sequences[std::size_t(b)]);
  at::Tensor lengths = at::tensor(lens, at::TensorOptions().dtype(at::kLong));
  at::Tensor hidden = llm_->forward(embeds, lengths);
  at::Tensor index = (lengths - 1).to(llm_->device()).view({B, 1, 1}).expand({B, 1, H});
  return hidden.gather(1, index).squeeze(1);
}

}  // namespace align2
