// The model shape the engine benchmarks share: a random LLaMA with hidden 1024, 8 layers,
// 16 heads (no GQA), intermediate 2816, vocab 32000 — small enough for 2 cores, large enough
// that every GEMM and the decode's weight stream behave as in a 7B model.
#pragma once

#include "test/model_fixture.h"

namespace align2::bench {

inline test::TinyModelOptions benchmark_llama() {
  test::TinyModelOptions o;
  o.hidden = 1024;
  o.intermediate = 2816;
  o.layers = 8;
  o.heads = 16;
  o.kv_heads = 16;
  o.vocab = 32000;
  o.scale = 0.02f;
  return o;
}

// Linear-layer parameters of the decoder (q, k, v, o, gate, up, down per layer).
inline double linear_parameters(const test::TinyModelOptions& o) {
  return double(o.layers) * (4.0 * double(o.hidden) * double(o.hidden) + 3.0 * double(o.hidden) * double(o.intermediate));
}

}  // namespace align2::bench
