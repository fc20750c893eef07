// Text generation with the KV cache: batched decode, greedy or temperature/top-p
// sampling with a per-sequence seed, stop on EOS or max_new_tokens. A sequence's
// tokens depend only on its own prompt and seed, never on the other rows of the batch.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "core/engine/llama_model.h"

namespace align2 {

struct GenerationOptions {
  std::int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 = greedy (argmax, lowest id on ties)
  double top_p = 1.0;        // nucleus: smallest set of most likely tokens with mass >= top_p
  std::int64_t eos_token_id = 2;
  bool keep_logits = false;  // return the float32 logits of every fed position
};

struct GenerationResult {
  std::vector<std::int64_t> tokens;  // generated ids, EOS included when it ended the sequence
  bool stopped_by_eos = false;
  at::Tensor logits;                 // float32 [fed positions, vocab] when keep_logits
};

// prompts[i]: embeddings [T_i, hidden] of sequence i (T_i >= 1); seeds[i]: its seed.
std::vector<GenerationResult> generate(const LlamaModel& model, const std::vector<at::Tensor>& prompts,
                                       const std::vector<std::uint64_t>& seeds, const GenerationOptions& options);

// The sampling rule on one row of float32 logits [vocab] (host), with the `step`-th
// draw of the stream `seed`. Exposed for tests.
std::int64_t sample_token(const float* logits, std::int64_t vocab, const GenerationOptions& options,
                          std::uint64_t seed, std::uint64_t step);

}  // namespace align2
