#include "core/engine/llama_model.h"

#include <fmt/format.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/version.h>  // TORCH_VERSION_MAJOR: fused attention from libtorch 2.0

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

#include "core/util/huge_pages.h"
#include "kernels/decode_attention.h"
#include "kernels/linear_rows.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace align2 {
namespace {

at::ScalarType aten_dtype(DType d) {
  switch (d) {
    case DType::f32: return at::kFloat;
    case DType::f16: return at::kHalf;
    case DType::bf16: return at::kBFloat16;
    case DType::i64: return at::kLong;
    case DType::i32: return at::kInt;
    case DType::u8: return at::kByte;
  }
  return at::kFloat;
}

// x [..., hd] → cat(-x2, x1)
at::Tensor rotate_half(const at::Tensor& x) {
  std::int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

namespace {

// Whether a product of a and b is better computed in float32: both bfloat16, on a CPU whose
// bf16 GEMM has no fast kernel, and no gradient to keep (see dense_linear).
bool native_bf16() {
  static const bool native = std::strcmp(linear_rows_bf16_bf16_isa(), "avx512bf16") == 0;
  return native;
}

bool widen_bf16_product(const at::Tensor& a, const at::Tensor& b) {
  return !native_bf16() && a.device().is_cpu() && a.scalar_type() == at::kBFloat16 &&
         b.scalar_type() == at::kBFloat16 &&
         !(at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad()));
}

}  // namespace

const char* dense_bf16_path() { return native_bf16() ? "bf16 (avx512bf16)" : "float32 (bf16 operands widened)"; }

at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!widen_bf16_product(x, w)) return at::linear(x, w, b);
  at::Tensor bias = b.defined() ? b.to(at::kFloat) : b;
  return at::linear(x.to(at::kFloat), w.to(at::kFloat), bias).to(at::kBFloat16);
}

at::Tensor dense_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (!widen_bf16_product(a, b)) return at::matmul(a, b);
  return at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
}

std::int64_t bf16_rows_gemm_min() {
  static const std::int64_t rows = [] {
    const char* set = std::getenv("ALIGN2_BF16_ROWS_GEMM_MIN");
    if (!set) return cpu_has_amx_bf16() ? std::int64_t(16) : kLinearRowsMax + 1;
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(set, &end, 10);
    if (end == set || *end != '\0' || errno != 0 || n < 2 || n > kLinearRowsMax + 1)
      throw std::runtime_error(fmt::format("ALIGN2_BF16_ROWS_GEMM_MIN='{}': expected a whole number from 2 to {}",
                                           set, kLinearRowsMax + 1));
    return std::int64_t(n);
  }();
  return rows;
}

at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w) {
  const std::int64_t K = x.size(-1), N = w.size(0), M = K ? x.numel() / K : 0;
  if (M == 0 || M > kLinearRowsMax || !x.device().is_cpu() || !w.is_contiguous()) return dense_linear(x, w);
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad())) return at::linear(x, w);
  const bool f32 = x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat;
  const bool bf16 = x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16;
  if (!f32 && !bf16) return at::linear(x, w);
  if (bf16 && M >= bf16_rows_gemm_min()) return dense_linear(x, w);
  // A few rows on CPU (decode): weight-stationary, each weight row read once for all rows, and
  // each row's result the same whatever the other rows (kernels/linear_rows.h). Sums in
  // float32; bf16 results are rounded once at the end.
  std::vector<std::int64_t> shape = x.sizes().vec();
  shape.back() = N;
  at::Tensor y = at::empty({M, N}, at::TensorOptions().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  if (bf16) {  // bfloat16 rows and weights: pairs of exact products (AVX-512 BF16 where present)
    at::Tensor xb = x.reshape({M, K}).contiguous();
    const auto* xp = reinterpret_cast<const std::uint16_t*>(xb.data_ptr<at::BFloat16>());
    const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>());
    at::Tensor out = at::empty({M, N}, x.options());
    at::BFloat16* op = out.data_ptr<at::BFloat16>();
    at::parallel_for(0, N, 16, [&](std::int64_t begin, std::int64_t end) {
      linear_rows_bf16_bf16(xp, wp + begin * K, yp + begin, M, end - begin, K, N);
      for (std::int64_t m = 0; m < M; ++m)  // rounded to nearest even, as .to(kBFloat16) does
        for (std::int64_t n = begin; n < end; ++n) op[m * N + n] = at::BFloat16(yp[m * N + n]);
    });
    return out.view(shape);
  }
  at::Tensor xf = x.reshape({M, K}).contiguous();
  const float* xp = xf.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](std::int64_t begin, std::int64_t end) {
    linear_rows_f32(xp, wp + begin * K, yp + begin, M, end - begin, K, N);
  });
  return y.view(shape);
}

at::Tensor streamed_storage(const std::vector<std::int64_t>& shape, at::ScalarType dtype) {
  std::size_t bytes = at::elementSize(dtype);
  for (std::int64_t d : shape) bytes *= std::size_t(d);
  if (bytes < (std::size_t(2) << 20)) return at::zeros(shape, at::TensorOptions().dtype(dtype));
  HugePageBuffer buffer;  // its own mapping, zero-filled
  try {
    buffer = HugePageBuffer(bytes);
  } catch (const std::bad_alloc&) {
    return at::zeros(shape, at::TensorOptions().dtype(dtype));
  }
  const std::size_t len = buffer.mapped_bytes();
  return at::from_blob(buffer.release(), shape, [len](void* q) { HugePageBuffer::release_mapping(q, len); },
                       at::TensorOptions().dtype(dtype));
}

at::Tensor load_tensor(const Checkpoint& ckpt, const std::string& name, const std::vector<std::int64_t>& shape,
                       at::ScalarType dtype) {
  const TensorView& v = ckpt.get(name, shape);
  at::Tensor out = streamed_storage(v.shape, dtype);
  if (aten_dtype(v.dtype) == dtype) {
    if (v.nbytes) std::memcpy(out.data_ptr(), v.data, v.nbytes);
  } else {
    // Offsets inside a safetensors file are not aligned: copy the bytes into an aligned
    // tensor of the file's dtype first, then convert.
    at::Tensor src = at::empty(v.shape, at::TensorOptions().dtype(aten_dtype(v.dtype)));
    if (v.nbytes) std::memcpy(src.data_ptr(), v.data, v.nbytes);
    out.copy_(src);
  }
  // The mapped source leaves memory as each tensor is loaded: a model in memory costs its
  // converted copy only, never the copy plus the file's pages.
  ckpt.release(name);
  return out;
}

LlamaModel::LlamaModel(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype, at::Device device)
    : cfg_(spec.llm), dtype_(dtype), device_(device) {
  const LlamaConfig& c = cfg_;
  const std::int64_t H = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  if (c.num_heads % c.num_kv_heads != 0)
    throw std::runtime_error(fmt::format("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                                         spec.dir, c.num_heads, c.num_kv_heads));
  auto load = [&](const std::string& canonical, std::vector<std::int64_t> shape) {
    return load_tensor(ckpt, spec.llm_weight(canonical), shape, dtype).to(device);
  };
  embed_tokens_ = load("embed_tokens.weight", {c.vocab_size, H});
  norm_ = load("norm.weight", {H});
  lm_head_ = c.tie_word_embeddings ? embed_tokens_ : load("lm_head.weight", {c.vocab_size, H});
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = fmt::format("layers.{}.", l);
    Layer layer;
    layer.input_norm = load(p + "input_layernorm.weight", {H});
    layer.q = load(p + "self_attn.q_proj.weight", {qd, H});
    layer.k = load(p + "self_attn.k_proj.weight", {kvd, H});
    layer.v = load(p + "self_attn.v_proj.weight", {kvd, H});
    layer.o = load(p + "self_attn.o_proj.weight", {H, qd});
    layer.post_norm = load(p + "post_attention_layernorm.weight", {H});
    layer.gate = load(p + "mlp.gate_proj.weight", {c.intermediate_size, H});
    layer.up = load(p + "mlp.up_proj.weight", {c.intermediate_size, H});
    layer.down = load(p + "mlp.down_proj.weight", {H, c.intermediate_size});
    layers_.push_back(std::move(layer));
  }
  // inv_freq = 1 / theta^(2i / head_dim), float32, as transformers computes it.
  at::Tensor exponents = at::arange(0, c.head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                         float(c.head_dim);
  inv_freq_ = (1.0 / at::pow(at::scalar_tensor(c.rope_theta, at::kFloat), exponents)).to(device);
}

at::Tensor LlamaModel::embed(const at::Tensor& ids) const {
  return embed_tokens_.index_select(0, ids.reshape({-1}).to(device_)).view({ids.size(0), ids.size(1), -1});
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor var = h.pow(2).mean({-1}, /*keepdim=*/true);
  h = h * at::rsqrt(var + cfg_.rms_norm_eps);
  return weight * h.to(dtype_);
}

void LlamaModel::rope(const at::Tensor& positions, at::Tensor* cos, at::Tensor* sin) const {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                // [B, 1, T, hd]
  *cos = emb.cos().to(dtype_);
  *sin = emb.sin().to(dtype_);
}

namespace {

// Attention of queries q [B, nh, T, hd] over keys and values [B, nkv, S, hd] (nh a multiple of
// nkv: grouped-query heads h = kv * rep + r share kv head `kv`) under the additive mask
// [B, 1, T, S] → [B, T, nh * hd] in `dtype`. Softmax in float32. On a GPU with libtorch 2.x,
// ATen's fused scaled_dot_product_attention (its memory-efficient kernel: the mask is given).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                  at::ScalarType dtype) {
  const std::int64_t B = q.size(0), nh = q.size(1), T = q.size(2), hd = q.size(3), nkv = k.size(1),
                     S = k.size(2), rep = nh / nkv;
#if TORCH_VERSION_MAJOR >= 2
  if (!q.device().is_cpu()) {
    at::Tensor keys = rep > 1 ? k.repeat_interleave(rep, 1) : k, values = rep > 1 ? v.repeat_interleave(rep, 1) : v;
    return at::scaled_dot_product_attention(q, keys, values, mask).transpose(1, 2).reshape({B, T, nh * hd});
  }
#endif
  // Without copying K/V: the rep query heads of a kv head form one matrix of rep * T rows.
  at::Tensor qg = q.reshape({B, nkv, rep * T, hd});
  at::Tensor scores = dense_matmul(qg, k.transpose(-1, -2)).view({B, nkv, rep, T, S}) * (1.0 / std::sqrt(double(hd)));
  scores = scores + mask.unsqueeze(1);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dtype);
  return dense_matmul(probs.view({B, nkv, rep * T, S}), v).view({B, nh, T, hd}).transpose(1, 2).reshape({B, T, nh * hd});
}

}  // namespace

at::Tensor LlamaModel::layer_forward(const Layer& L, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                     const at::Tensor& mask, KVCache* cache, std::size_t li,
                                     const at::Tensor& write_positions) const {
  const std::int64_t B = x.size(0), T = x.size(1), nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, hd = cfg_.head_dim;
  at::Tensor h = rms_norm(x, L.input_norm);
  at::Tensor q = project(h, L.q, li, 0).view({B, T, nh, hd}).transpose(1, 2);
  at::Tensor k = project(h, L.k, li, 1).view({B, T, nkv, hd}).transpose(1, 2);
  at::Tensor v = project(h, L.v, li, 2).view({B, T, nkv, hd}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;

  at::Tensor k_all = k, v_all = v;
  if (cache) {
    if (T == 1 && write_positions.defined()) {  // decode: row b writes at its own length
      at::Tensor rows = at::arange(B, at::TensorOptions().dtype(at::kLong).device(device_));
      cache->keys[li].index_put_({rows, at::indexing::Slice(), write_positions}, k.squeeze(2));
      cache->values[li].index_put_({rows, at::indexing::Slice(), write_positions}, v.squeeze(2));
    } else {  // prefill: positions 0..T-1
      cache->keys[li].narrow(2, 0, T).copy_(k);
      cache->values[li].narrow(2, 0, T).copy_(v);
    }
    std::int64_t S = mask.size(-1);
    k_all = cache->keys[li].narrow(2, 0, S);
    v_all = cache->values[li].narrow(2, 0, S);
  }
  at::Tensor attn = attend(q, k_all, v_all, mask, dtype_);  // [B, T, nh * hd]
  at::Tensor out = x + project(attn, L.o, li, 3);
  at::Tensor m = rms_norm(out, L.post_norm);
  return out + project(at::silu(project(m, L.gate, li, 4)) * project(m, L.up, li, 5), L.down, li, 6);
}

at::Tensor LlamaModel::forward(const at::Tensor& embeds, const at::Tensor& lengths_in, KVCache* cache,
                               std::int64_t capacity) const {
  const std::int64_t B = embeds.size(0), T = embeds.size(1);
  at::TensorOptions longs = at::TensorOptions().dtype(at::kLong).device(device_);
  at::Tensor lengths = lengths_in.to(longs);
  at::Tensor positions = at::arange(T, longs).unsqueeze(0).expand({B, T});
  // Additive mask [B, 1, T, S=T]: key j visible to query i when j <= i and j < length.
  at::Tensor keys = at::arange(T, longs);
  at::Tensor allowed = keys.view({1, 1, T}).le(positions.unsqueeze(-1)) &
                       keys.view({1, 1, T}).lt(lengths.view({B, 1, 1}));
  at::Tensor mask = at::zeros({B, T, T}, at::TensorOptions().dtype(dtype_).device(device_))
                        .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                        .unsqueeze(1);
  if (cache) {
    if (capacity < T) capacity = T;
    cache->capacity = capacity;
    cache->keys.assign(layers_.size(), at::Tensor());
    cache->values.assign(layers_.size(), at::Tensor());
    const std::vector<std::int64_t> shape = {B, cfg_.num_kv_heads, capacity, cfg_.head_dim};
    const at::TensorOptions options = at::TensorOptions().dtype(dtype_).device(device_);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const bool cpu = device_.is_cpu();
      cache->keys[l] = cpu ? streamed_storage(shape, dtype_) : at::zeros(shape, options);
      cache->values[l] = cpu ? streamed_storage(shape, dtype_) : at::zeros(shape, options);
    }
    cache->lengths = lengths.clone();
  }
  at::Tensor cos, sin;
  rope(positions, &cos, &sin);
  at::Tensor x = embeds.to(dtype_);
  for (std::size_t l = 0; l < layers_.size(); ++l) x = layer_forward(layers_[l], x, cos, sin, mask, cache, l, {});
  return rms_norm(x, norm_);
}

at::Tensor LlamaModel::decode(const at::Tensor& embeds, KVCache& cache) const {
  const std::int64_t B = embeds.size(0);
  at::TensorOptions longs = at::TensorOptions().dtype(at::kLong).device(device_);
  at::Tensor write = cache.lengths;                      // [B] position of the new token
  std::int64_t S = write.max().item<std::int64_t>() + 1;  // keys to look at
  if (S > cache.capacity)
    throw std::runtime_error(fmt::format("KV cache full: {} positions", cache.capacity));
  if (device_.is_cpu() && (dtype_ == at::kFloat || dtype_ == at::kBFloat16)) {
    at::Tensor positions = write.to(at::kLong).contiguous(), visible = positions + 1;
    at::Tensor x = embeds.to(dtype_).reshape({B, cfg_.hidden_size}).contiguous();
    for (std::size_t l = 0; l < layers_.size(); ++l)
      x = decode_layer(layers_[l], x, positions.data_ptr<std::int64_t>(), visible.data_ptr<std::int64_t>(), cache, l);
    cache.lengths = visible;
    return norm_rows(x, norm_).view({B, 1, cfg_.hidden_size});
  }
  at::Tensor keys = at::arange(S, longs);
  at::Tensor allowed = keys.view({1, 1, S}).le(write.view({B, 1, 1}));
  at::Tensor mask = at::zeros({B, 1, S}, at::TensorOptions().dtype(dtype_).device(device_))
                        .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                        .unsqueeze(1);
  at::Tensor cos, sin;
  rope(write.view({B, 1}), &cos, &sin);
  at::Tensor x = embeds.to(dtype_);
  for (std::size_t l = 0; l < layers_.size(); ++l) x = layer_forward(layers_[l], x, cos, sin, mask, &cache, l, write);
  cache.lengths = write + 1;
  return rms_norm(x, norm_);
}

at::Tensor LlamaModel::logits(const at::Tensor& hidden) const {
  return linear_rows(hidden, lm_head_).to(at::kFloat);
}

}  // namespace align2

namespace align2 {

at::Tensor& LlamaModel::weight(const std::string& name) {
  if (name == "embed_tokens.weight") return embed_tokens_;
  if (name == "norm.weight") return norm_;
  if (name == "lm_head.weight") return lm_head_;
  // layers.<i>.<module>.weight
  std::size_t dot = name.find('.', 7);
  if (name.rfind("layers.", 0) == 0 && dot != std::string::npos) {
    std::size_t i = std::stoul(name.substr(7, dot - 7));
    std::string rest = name.substr(dot + 1);
    if (i < layers_.size()) {
      Layer& L = layers_[i];
      if (rest == "input_layernorm.weight") return L.input_norm;
      if (rest == "self_attn.q_proj.weight") return L.q;
      if (rest == "self_attn.k_proj.weight") return L.k;
      if (rest == "self_attn.v_proj.weight") return L.v;
      if (rest == "self_attn.o_proj.weight") return L.o;
      if (rest == "post_attention_layernorm.weight") return L.post_norm;
      if (rest == "mlp.gate_proj.weight") return L.gate;
      if (rest == "mlp.up_proj.weight") return L.up;
      if (rest == "mlp.down_proj.weight") return L.down;
    }
  }
  throw std::out_of_range("LLaMA has no weight named " + name);
}

std::vector<std::string> LlamaModel::linear_names() const {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      names.push_back(fmt::format("layers.{}.{}.weight", i, m));
  return names;
}

}  // namespace align2

namespace align2 {

at::Tensor LlamaModel::project(const at::Tensor& x, const at::Tensor& w, std::size_t layer, int module) const {
  at::Tensor y = linear_rows(x, w);
  if (!lora_) return y;
  std::size_t index = layer * 7 + std::size_t(module);
  if (index >= lora_->A.size() || !lora_->A[index].defined()) return y;
  at::Tensor input = x;
  if (lora_->training && lora_->dropout > 0) {
    // A mask from its own generator: the same for any rank, batch or resume.
    std::uint64_t seed = lora_->dropout_seed * 0x9e3779b97f4a7c15ull + index + 1;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::Tensor keep = at::bernoulli(at::full(x.sizes(), 1.0 - lora_->dropout, at::TensorOptions().dtype(at::kFloat)), gen)
                          .to(x.device(), x.scalar_type());
    input = x * keep / (1.0 - lora_->dropout);
  }
  at::Tensor update = at::linear(at::linear(input.to(lora_->A[index].scalar_type()), lora_->A[index]), lora_->B[index]);
  return y + (lora_->scale * update).to(y.scalar_type());
}

}  // namespace align2

namespace align2 {
namespace {

std::uint16_t* bf16_bits(const at::Tensor& t) { return reinterpret_cast<std::uint16_t*>(t.data_ptr<at::BFloat16>()); }

}  // namespace

at::Tensor LlamaModel::norm_rows(const at::Tensor& x, const at::Tensor& weight) const {
  const std::int64_t n = x.size(-1), rows = x.numel() / n;
  at::Tensor out = at::empty_like(x);
  const float eps = float(cfg_.rms_norm_eps);
  if (dtype_ == at::kFloat)
    rms_norm_f32(x.data_ptr<float>(), weight.data_ptr<float>(), out.data_ptr<float>(), rows, n, eps);
  else
    rms_norm_bf16(bf16_bits(x), bf16_bits(weight), bf16_bits(out), rows, n, eps);
  return out;
}

at::Tensor LlamaModel::decode_layer(const Layer& L, const at::Tensor& x, const std::int64_t* positions,
                                    const std::int64_t* visible, KVCache& cache, std::size_t li) const {
  const std::int64_t B = x.size(0), nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, hd = cfg_.head_dim,
                     cap = cache.capacity;
  const bool f32 = dtype_ == at::kFloat;
  const float* inv_freq = inv_freq_.data_ptr<float>();
  at::Tensor h = norm_rows(x, L.input_norm);
  at::Tensor q = project(h, L.q, li, 0).contiguous();  // [B, nh * hd]
  at::Tensor k = project(h, L.k, li, 1).contiguous();  // [B, nkv * hd]
  at::Tensor v = project(h, L.v, li, 2).contiguous();  // [B, nkv * hd]
  if (f32) {
    rope_f32(q.data_ptr<float>(), positions, inv_freq, B, nh, hd);
    rope_f32(k.data_ptr<float>(), positions, inv_freq, B, nkv, hd);
  } else {
    rope_bf16(bf16_bits(q), positions, inv_freq, B, nh, hd);
    rope_bf16(bf16_bits(k), positions, inv_freq, B, nkv, hd);
  }
  // The new key and value of row b go to position positions[b] of its cache [B, nkv, cap, hd].
  const std::size_t elem = x.element_size(), row = std::size_t(hd) * elem;
  auto* kc = static_cast<char*>(cache.keys[li].data_ptr());
  auto* vc = static_cast<char*>(cache.values[li].data_ptr());
  const auto* kn = static_cast<const char*>(k.data_ptr());
  const auto* vn = static_cast<const char*>(v.data_ptr());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t g = 0; g < nkv; ++g) {
      const std::size_t at = std::size_t((b * nkv + g) * cap + positions[b]) * row;
      const std::size_t from = std::size_t(b * nkv + g) * row;
      std::memcpy(kc + at, kn + from, row);
      std::memcpy(vc + at, vn + from, row);
    }
  at::Tensor attn = at::empty({B, nh * hd}, x.options());
  const float scale = float(1.0 / std::sqrt(double(hd)));
  at::parallel_for(0, B * nh, 1, [&](std::int64_t begin, std::int64_t end) {
    if (f32)
      decode_attention_f32(q.data_ptr<float>(), cache.keys[li].data_ptr<float>(), cache.values[li].data_ptr<float>(),
                           visible, attn.data_ptr<float>(), B, nh, nkv, cap, hd, scale, begin, end);
    else
      decode_attention_bf16(bf16_bits(q), bf16_bits(cache.keys[li]), bf16_bits(cache.values[li]), visible,
                            bf16_bits(attn), B, nh, nkv, cap, hd, scale, begin, end);
  });
  at::Tensor out = x + project(attn, L.o, li, 3);
  at::Tensor m = norm_rows(out, L.post_norm);
  return out + project(at::silu(project(m, L.gate, li, 4)) * project(m, L.up, li, 5), L.down, li, 6);
}

}  // namespace align2
