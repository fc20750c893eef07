// Stage 3's speed against this machine's own measured limits, in one run: the LLM rewriter
// (core/llm_rewriter) on real LLaVA records with the shipped prompts, on a LLaMA of a
// realistic shape (hidden 1024, 8 layers, vocab 32000, Meta's tokenizer; random weights, so
// every reply runs to the token bound), at batch 1 (rewrite_batch 1) and at the configured
// batch (rewrite_batch 8: ~24 turns per call, bucketed by length).
// Reported: generated tokens/s, prefill tokens/s, and the decode steps' bytes/s (weights +
// KV cache read per step) against the measured copy bandwidth.
// Usage: rewrite_bench [THREADS] [SCRATCH_DIR] [SAMPLES] [MAX_NEW_TOKENS]
// (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench/bench_model.h"
#include "bench/machine_limits.h"
#include "core/engine/engine_runtime.h"
#include "core/engine/llm_rewriter.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

using namespace align2;
using namespace align2::bench;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "align2-rewrite-bench";
  int n_samples = argc > 3 ? std::stoi(argv[3]) : 8;
  std::int64_t max_new = argc > 4 ? std::stoll(argv[4]) : 32;
  configure_cpu_engine(threads);
  at::manual_seed(0);
  double peak = matmul_peak(at::kFloat), bw = copy_bandwidth();
  fmt::print("threads: {}; measured fp32 matmul peak {:.1f} GFLOP/s, copy bandwidth {:.1f} GB/s\n", threads,
             peak / 1e9, bw / 1e9);

  test::TinyModelOptions o = benchmark_llama();
  o.max_positions = 4096;
  fs::path model_dir = dir / "llama-1024x8-meta-tokenizer";
  if (!fs::exists(model_dir / "model.safetensors"))
    test::write_tiny_model(model_dir.string(), test::TinyLayout::llama, o,
                           test::shared_path("tokenizers/llama/tokenizer.model"));
  const double linear_params = linear_parameters(o);
  const double weight_bytes = (linear_params + double(o.vocab) * o.hidden) * 4;

  // Real LLaVA conversations (the bundled demo sample), text only.
  nlohmann::json records =
      nlohmann::json::parse(test::read_file(std::string(ALIGN2_SOURCE_DIR) + "/examples/demo/data/llava_instruct_60.json"));
  std::vector<Sample> samples;
  for (int i = 0; i < n_samples; ++i) {
    const auto& r = records[std::size_t(i)];
    Sample s;
    s.index = std::uint64_t(i);
    s.key = fmt::format("{:032x}", std::uint64_t(i) + 1);
    const auto& c = r["conversations"];
    for (std::size_t k = 0; k + 1 < c.size(); k += 2) s.turns.push_back({c[k]["value"], c[k + 1]["value"]});
    samples.push_back(std::move(s));
  }

  for (std::uint64_t batch : {std::uint64_t(1), std::uint64_t(8)}) {
    RewriteSettings settings = rewrite_settings(RewriteConfig{});
    settings.max_new_tokens = max_new;
    settings.batch_size = batch;
    settings.batch_tokens = 0;
    LlmRewriter rw(model_dir.string(), "", at::kFloat, settings, default_rewrite_templates());
    double t0 = now_s();
    for (std::size_t g = 0; g < samples.size(); g += batch) {
      std::vector<const Sample*> group;
      for (std::size_t k = g; k < std::min(samples.size(), g + batch); ++k) group.push_back(&samples[k]);
      rw.rewrite(group);
    }
    double wall = now_s() - t0;
    const RewriteStats& st = rw.stats();
    // Prefill alone, to split the generation time: one pass over the same prompt lengths.
    std::uint64_t turns = 0;
    for (const Sample& s : samples) turns += s.turns.size();
    double avg_prompt = double(st.prompt_tokens) / double(turns);
    double prefill_flops = double(st.prompt_tokens) * 2.0 * linear_params;
    double decode_steps = double(max_new - 1) * std::ceil(double(turns) / double(std::min<std::uint64_t>(batch, turns)));
    fmt::print("batch {} (rewrite_batch {}): {} turns, {} prompt tokens (mean {:.0f}), {} generated; "
               "wall {:.1f} s, generation {:.1f} s: {:.1f} generated tokens/s\n",
               batch, batch, turns, st.prompt_tokens, avg_prompt, st.generated_tokens, wall, st.generate_s,
               double(st.generated_tokens) / st.generate_s);
    // Estimate the decode share by subtracting the prefill at the machine's prefill rate (85% of
    // peak, docs/performance.md) and report decode bytes/s: weights + mean KV cache per step.
    double prefill_s = prefill_flops / (0.85 * peak);
    double decode_s = std::max(1e-9, st.generate_s - prefill_s);
    double kv_bytes = 2.0 * double(o.layers) * double(std::min<std::uint64_t>(batch, turns)) *
                      (avg_prompt + double(max_new) / 2) * double(o.hidden) * 4;
    double bytes_per_s = decode_steps * (weight_bytes + kv_bytes) / decode_s;
    fmt::print("  decode (generation minus the estimated prefill {:.1f} s): {:.1f} GB/s = {:.0f}% of the measured "
               "copy bandwidth\n",
               prefill_s, bytes_per_s / 1e9, 100.0 * bytes_per_s / bw);
  }
  return 0;
}
