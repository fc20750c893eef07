// The LLaMA decoder (Vicuna, the inner LLM of LLaVA) in ATen: RMSNorm, RoPE
// (rotate_half), grouped-query attention with causal and padding masks, SwiGLU MLP,
// tied or separate lm_head; a per-sequence KV cache for generation. Numerics follow
// transformers' modeling_llama.py (RMSNorm and RoPE tables in float32).
// This header includes ATen: it is the engine's own interface.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/model/model_config.h"
#include "core/model/safetensors.h"

namespace align2 {

// Copies a checkpoint tensor into a new ATen tensor of `dtype` (conversion exact for
// F32/F16/BF16 sources), checking its shape.
at::Tensor load_tensor(const Checkpoint& ckpt, const std::string& name, const std::vector<std::int64_t>& shape,
                       at::ScalarType dtype);

// A zero-filled CPU tensor for memory that decode reads end to end at every step (weights,
// the KV cache). From 2 MiB up it gets its own 2 MiB-aligned mapping advised for transparent
// huge pages (madvise; ignored where THP is off), so streaming it does not stop the hardware
// prefetchers at every 4 KiB page or miss the TLB every two weight rows; smaller ones come
// from the allocator.
at::Tensor streamed_storage(const std::vector<std::int64_t>& shape, at::ScalarType dtype);

// x [..., K] @ w[N, K]^T → [..., N] (at::linear without bias). On CPU without gradients,
// inputs of at most kLinearRowsMax rows (decode steps), fp32 or bf16, take the weight-stationary
// kernels/linear_rows.h (float32 sums), whose result for a row does not depend on the other
// rows of the batch; everything else is dense_linear.
// bfloat16 inputs of bf16_rows_gemm_min() rows and more go to dense_linear instead.
constexpr std::int64_t kLinearRowsMax = 64;
at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w);

// From how many rows a bfloat16 linear_rows leaves the kernel for ATen's GEMM (oneDNN). On a CPU
// with AMX-BF16 (cpu_has_amx_bf16) ATen's bf16 matmul measured 1,240 GFLOP/s on 2 threads where
// the kernel reached about 11% of that at batch 32 (issue 18's figures), so decode rows from 16
// on (one AMX tile's height; the crossover is not yet measured on an AMX machine) go to it there. Elsewhere kLinearRowsMax + 1, i.e. never: on an
// AVX-512 BF16 CPU without AMX the kernel is 10-45% faster up to 32 rows and level at 64
// (linear_rows_bench, docs/performance.md).
// ALIGN2_BF16_ROWS_GEMM_MIN=N, N from 2 to kLinearRowsMax + 1, read once, sets it (a bad value
// throws std::runtime_error naming it): one row (batch 1) always streams the weights through the
// kernel. Through the GEMM a row's result depends on how many rows share the call, which the
// rewrite stage's fixed groups keep deterministic (core/rewrite/rewriter.h).
std::int64_t bf16_rows_gemm_min();

// at::linear(x, w, b), except for bfloat16 on a CPU without AVX-512 BF16, where ATen's bf16
// matrix product has no fast kernel (1.9 GFLOP/s on 2 AVX2 cores, against 35 in float32): there
// the operands are widened to float32 (exactly), multiplied by the float32 GEMM and the result
// rounded to bfloat16 once, which is what a bf16 GEMM with float32 sums computes. The widened
// weight [N, K] float32 is a temporary of one call. `b` may be undefined.
at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = at::Tensor());

// How this CPU computes bf16 dense products (dense_linear, dense_matmul), for benchmark output:
// "bf16 (avx512bf16)" or "float32 (bf16 operands widened)".
const char* dense_bf16_path();

// at::matmul(a, b) under the same rule as dense_linear: bfloat16 operands on a CPU without
// AVX-512 BF16 are multiplied in float32 and the result rounded to bfloat16 once. For the
// attention products (scores [.., T, S] and probabilities times values), whose bf16 ATen GEMM
// otherwise costs more than all the layer's linears at a few hundred positions.
at::Tensor dense_matmul(const at::Tensor& a, const at::Tensor& b);

// LoRA on the decoder's linear layers: y = x W^T + scale * (dropout(x) A^T) B^T.
// Linear k of layer l has index l * 7 + k, k in (q, k, v, o, gate, up, down) order
// (LlamaModel::linear_names()). A and B may need gradients (training).
struct LoraWeights {
  std::vector<at::Tensor> A;  // per linear index: [r, in], undefined when the linear is not adapted
  std::vector<at::Tensor> B;  // per linear index: [out, r]
  double scale = 1.0;         // lora_alpha / r
  double dropout = 0.0;       // probability, applied only when `training`
  bool training = false;
  std::uint64_t dropout_seed = 0;  // masks come from generators seeded by (dropout_seed, linear index)
};

// Per-sequence KV cache: for each layer, keys and values [B, kv_heads, capacity, head_dim];
// lengths[b] = positions of sequence b already in the cache.
struct KVCache {
  std::vector<at::Tensor> keys, values;
  at::Tensor lengths;  // int64 [B]
  std::int64_t capacity = 0;
};

class LlamaModel {
 public:
  // Loads every weight named by `spec` from `ckpt` into `dtype` on `device`.
  LlamaModel(const ModelSpec& spec, const Checkpoint& ckpt, at::ScalarType dtype, at::Device device);

  const LlamaConfig& config() const { return cfg_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // Token embeddings: ids int64 [B, T] → [B, T, hidden].
  at::Tensor embed(const at::Tensor& ids) const;

  // Prefill: embeds [B, T, hidden], right-padded; lengths int64 [B] = real tokens per row.
  // Positions are 0..T-1 per row; padded keys are masked. When `cache` is given it is
  // (re)allocated with `capacity` positions and filled. Returns the final-norm hidden
  // states [B, T, hidden] (rows past each length are meaningless).
  at::Tensor forward(const at::Tensor& embeds, const at::Tensor& lengths, KVCache* cache = nullptr,
                     std::int64_t capacity = 0) const;

  // One decode step: embeds [B, 1, hidden] of the next token of every row, written at
  // position cache.lengths[b]; lengths advance by one. Returns final-norm hidden [B, 1, hidden].
  at::Tensor decode(const at::Tensor& embeds, KVCache& cache) const;

  // lm_head: hidden [..., hidden] → float32 logits [..., vocab].
  at::Tensor logits(const at::Tensor& hidden) const;

  // The weight tensor of a canonical name ("layers.3.self_attn.q_proj.weight",
  // "embed_tokens.weight", "norm.weight", "lm_head.weight"), for LoRA merging and
  // training. Throws std::out_of_range for an unknown name.
  at::Tensor& weight(const std::string& canonical);
  // Canonical names of the linear layers of every decoder layer, in layer order
  // (q, k, v, o, gate, up, down): LoRA's targets.
  std::vector<std::string> linear_names() const;

  // Applies `lora` (not owned; must outlive its use) in every forward; nullptr removes it.
  void set_lora(const LoraWeights* lora) { lora_ = lora; }

 private:
  struct Layer {
    at::Tensor input_norm, q, k, v, o, post_norm, gate, up, down;  // weights, [out, in] for linears
  };
  // Attention + MLP of one layer for queries at `positions` int64 [B, T] against keys
  // k_all/v_all [B, kv, S, hd] with additive mask [B, 1, T, S].
  at::Tensor layer_forward(const Layer& layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                           const at::Tensor& mask, KVCache* cache, std::size_t layer_index,
                           const at::Tensor& write_positions) const;
  // RoPE tables for positions int64 [B, T]: cos, sin [B, 1, T, head_dim] in the run dtype.
  void rope(const at::Tensor& positions, at::Tensor* cos, at::Tensor* sin) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;
  // Decode on CPU (float32, bfloat16): one token per row, x [B, hidden] contiguous, through
  // the fused kernels of kernels/ (RMSNorm, RoPE, attention) instead of chains of ATen ops.
  // positions int64 [B]: where each row's token goes; visible int64 [B] = positions + 1.
  at::Tensor decode_layer(const Layer& layer, const at::Tensor& x, const std::int64_t* positions,
                          const std::int64_t* visible, KVCache& cache, std::size_t layer_index) const;
  // RMSNorm of contiguous rows [..., hidden] through kernels/rms_norm (CPU, float32/bfloat16).
  at::Tensor norm_rows(const at::Tensor& x, const at::Tensor& weight) const;

  LlamaConfig cfg_;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor embed_tokens_, norm_, lm_head_;
  at::Tensor inv_freq_;  // float32 [head_dim / 2]
  const LoraWeights* lora_ = nullptr;
  // x @ W^T of linear `index` of `layer`, plus its LoRA update when one is set.
  at::Tensor project(const at::Tensor& x, const at::Tensor& w, std::size_t layer, int module) const;
  std::vector<Layer> layers_;
};

}  // namespace align2
