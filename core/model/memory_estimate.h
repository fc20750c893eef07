// What a model will take in memory, read off its checkpoints' headers before any weight is
// loaded, and the refusal, with both figures, when that is more than the rank may use
// (core/util/host_memory.h): a job that cannot fit stops with a message, not `Killed`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/model/model_config.h"
#include "core/util/host_memory.h"

namespace align2 {

struct MemoryEstimate {
  std::uint64_t weights = 0;  // bytes: every floating-point tensor at the run dtype, others as stored
  std::uint64_t working = 0;  // bytes: activations of one call, the KV cache, the runtime's own
  std::uint64_t total() const { return weights + working; }
};

// The model of `spec` (its LLM, vision tower and projector checkpoints) run with `run_bytes`
// per floating-point element, on calls of `sequences` sequences of up to `positions` positions
// each (`kv_cache`: generation keeps a key/value cache of all of them). The working part is an
// upper estimate: per sequence and layer, fp32 activations of the hidden states (8 x hidden),
// the MLP (3 x intermediate) and the attention scores (2 x heads x positions) per position, the
// logits of one position, plus 512 MiB for the runtime.
MemoryEstimate estimate_model_memory(const ModelSpec& spec, std::size_t run_bytes, std::int64_t positions,
                                     std::int64_t sequences, bool kv_cache);

// Throws std::runtime_error when `estimate` does not fit `budget`: "<what> needs about X
// (weights, working) but this rank may use Y (how)", with what to change. Nothing is checked
// when the budget is unknown (0).
void require_memory(const MemoryEstimate& estimate, const MemoryBudget& budget, const std::string& what);

}  // namespace align2
