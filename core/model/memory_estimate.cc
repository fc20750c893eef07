#include "core/model/memory_estimate.h"

#include <fmt/format.h>

#include <set>
#include <stdexcept>

#include "core/model/safetensors.h"

namespace align2 {
namespace {

// Bytes of every tensor of the checkpoint at `dir`, floating-point ones at `run_bytes` each.
std::uint64_t checkpoint_bytes(const std::string& dir, std::size_t run_bytes) {
  const Checkpoint ckpt(dir);  // headers only: the files are mapped, nothing is read
  std::uint64_t bytes = 0;
  for (const std::string& name : ckpt.names()) {
    const TensorView& v = ckpt.get(name);
    const bool floating = v.dtype == DType::f32 || v.dtype == DType::f16 || v.dtype == DType::bf16;
    bytes += floating ? std::uint64_t(v.numel()) * run_bytes : v.nbytes;
  }
  return bytes;
}

}  // namespace

MemoryEstimate estimate_model_memory(const ModelSpec& spec, std::size_t run_bytes, std::int64_t positions,
                                     std::int64_t sequences, bool kv_cache) {
  MemoryEstimate e;
  std::set<std::string> folders = {spec.dir};
  if (spec.has_vision && !spec.vision_dir.empty()) folders.insert(spec.vision_dir);
  for (const std::string& dir : folders) e.weights += checkpoint_bytes(dir, run_bytes);
  const std::uint64_t P = std::uint64_t(std::max<std::int64_t>(positions, 1));
  const std::uint64_t S = std::uint64_t(std::max<std::int64_t>(sequences, 1));
  std::uint64_t per_sequence = 0;
  if (spec.has_llm) {
    const LlamaConfig& c = spec.llm;
    per_sequence += P * 4 * std::uint64_t(8 * c.hidden_size + 3 * c.intermediate_size + 2 * c.num_heads * std::int64_t(P));
    per_sequence += 4 * std::uint64_t(c.vocab_size);
    if (kv_cache)
      per_sequence += 2 * std::uint64_t(c.num_layers) * P * std::uint64_t(c.num_kv_heads * c.head_dim) * run_bytes;
  }
  if (spec.has_vision) {
    const ClipVisionConfig& v = spec.vision;
    const std::uint64_t patches = std::uint64_t((v.image_size / v.patch_size) * (v.image_size / v.patch_size) + 1);
    per_sequence += patches * 4 * std::uint64_t(8 * v.hidden_size + 3 * v.intermediate_size + 2 * v.num_heads * std::int64_t(patches));
  }
  e.working = S * per_sequence + (512ull << 20);
  return e;
}

void require_memory(const MemoryEstimate& estimate, const MemoryBudget& budget, const std::string& what) {
  if (budget.bytes == 0 || estimate.total() <= budget.bytes) return;
  throw std::runtime_error(fmt::format(
      "{} needs about {} ({} of weights + {} working) but this rank may use {} ({}); run fewer ranks per node, "
      "a smaller batch or bf16, or a machine with more memory",
      what, gib(estimate.total()), gib(estimate.weights), gib(estimate.working), gib(budget.bytes), budget.how));
}

}  // namespace align2
