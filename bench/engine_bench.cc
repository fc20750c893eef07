// Engine speed against this machine's own measured limits, in one run:
//  - matmul peak (fp32, bf16) and copy bandwidth, measured here (and again right before the
//    workload each divides: this VM's speed drifts within a run);
//  - reward-scoring prefill on a realistic shape (LLaMA hidden 1024, 8 layers, 576 image
//    tokens + 200 text tokens, batch 4): achieved FLOP/s and its ratio to the peak;
//  - decode tokens/s at batch 1 and 32, and bytes/s against the measured bandwidth.
// Usage: engine_bench [THREADS] [SCRATCH_DIR] [all|prefill|decode] [all|fp32|bf16] [all|1|32 (decode batch)]
// (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/engine/engine_runtime.h"
#include "core/engine/generation.h"
#include "core/engine/llava_model.h"
#include "bench/bench_model.h"
#include "bench/machine_limits.h"
#include "test/model_fixture.h"

using namespace align2;
using namespace align2::bench;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "align2-engine-bench";
  std::string what = argc > 3 ? argv[3] : "all", which = argc > 4 ? argv[4] : "all";
  const std::string batches = argc > 5 ? argv[5] : "all";
  configure_cpu_engine(threads);
  at::manual_seed(0);
  fmt::print("{}\nthreads: {}\n", cpu_and_isa_line(), threads);

  // This VM's speed drifts within a run (other tenants): each ratio's limit is measured again
  // right before the workload it divides.
  double peak32 = matmul_peak(at::kFloat), peak16 = matmul_peak(at::kBFloat16), bw = copy_bandwidth();
  fmt::print("measured matmul peak: fp32 {:.1f} GFLOP/s, bf16 {:.1f} GFLOP/s; copy bandwidth {:.1f} GB/s\n",
             peak32 / 1e9, peak16 / 1e9, bw / 1e9);

  test::TinyModelOptions o = benchmark_llama();
  fs::path model_dir = dir / "llama-1024x8";
  if (!fs::exists(model_dir / "model.safetensors")) test::write_tiny_model(model_dir.string(), test::TinyLayout::llama, o);
  const std::int64_t H = o.hidden, L = o.layers;
  const double linear_params = linear_parameters(o);

  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const char* dn = dtype == at::kFloat ? "fp32" : "bf16";
    if (which != "all" && which != dn) continue;
    LlavaModel model(load_model_spec(model_dir.string()), dtype, at::Device(at::kCPU));
    const LlamaModel& llm = model.llm();

    // Prefill as reward scoring: batch 4 of 776 positions, last hidden state read out.
    const std::int64_t B = 4, T = 576 + 200;
    at::Tensor embeds = (at::randn({B, T, H}) * 0.02).to(dtype);
    at::Tensor lengths = at::full({B}, T, at::kLong);
    if (what == "all" || what == "prefill") {
    llm.forward(embeds, lengths);
    const double peak = matmul_peak(dtype);
    double t = best_time(2, [&] { llm.forward(embeds, lengths); });
    double flops = double(B) * T * 2.0 * linear_params + double(B) * L * 4.0 * double(T) * T * H;
    fmt::print("{} prefill B={} T={}: {:.2f} s, {:.1f} GFLOP/s = {:.0f}% of the {} matmul peak measured just before "
               "({:.1f} GFLOP/s)\n",
               dn, B, T, t, flops / t / 1e9, 100.0 * flops / t / peak, dn, peak / 1e9);
    }
    if (what != "all" && what != "decode") continue;

    // Decode: 16-token prompts, 32 new tokens (forced: no EOS stop), tokens/s and bytes/s.
    double decode_bw = 0;
    for (std::int64_t batch : {1, 32}) {
      if (batches != "all" && batches != std::to_string(batch)) continue;
      std::vector<at::Tensor> prompts;
      std::vector<std::uint64_t> seeds;
      for (std::int64_t b = 0; b < batch; ++b) {
        prompts.push_back((at::randn({16, H}) * 0.02).to(dtype));
        seeds.push_back(std::uint64_t(b));
      }
      // Decode-only time: 33 new tokens minus 1 new token (the prefill and first sample).
      GenerationOptions g;
      g.max_new_tokens = 33;
      g.eos_token_id = -1;
      GenerationOptions g1 = g;
      g1.max_new_tokens = 1;
      generate(llm, prompts, seeds, g);  // warm-up
      if (decode_bw == 0) decode_bw = copy_bandwidth();  // once per dtype, right before its decode
      double t_full = best_time(3, [&] { generate(llm, prompts, seeds, g); });
      double t_first = best_time(3, [&] { generate(llm, prompts, seeds, g1); });
      double tg = t_full - t_first;
      if (std::getenv("ALIGN2_BENCH_VERBOSE")) fmt::print("  (33 new: {:.3f} s, 1 new: {:.3f} s)\n", t_full, t_first);
      double steps = double(g.max_new_tokens - 1);
      double tokens = steps * double(batch);
      // Bytes read per decode step: every linear weight + lm_head, plus the KV cache.
      double wbytes = (linear_params + double(o.vocab) * H) * (dtype == at::kFloat ? 4 : 2);
      double kv = 2.0 * L * double(batch) * (16 + steps / 2) * H * (dtype == at::kFloat ? 4 : 2);
      double bytes_per_s = steps * (wbytes + kv) / tg;
      fmt::print("{} decode batch {:>2}: {:.1f} tokens/s, {:.1f} GB/s = {:.0f}% of the copy bandwidth measured just "
                 "before ({:.1f} GB/s)\n",
                 dn, batch, tokens / tg, bytes_per_s / 1e9, 100.0 * bytes_per_s / decode_bw, decode_bw / 1e9);
    }
  }
  return 0;
}
