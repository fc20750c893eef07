// Reward-model scoring speed against this machine's own measured fp32 matmul peak, in one run.
// Times the computation RewardModel::score does (core/engine/reward_model.cc), through the
// public engine API, without a tokenizer (synthetic token ids):
//   per sample: encode_images → project (image features, once per sample);
//   per text:   splice(BOS, <image>, N ids) → last_hidden({one sequence}) → dot with a
//               score vector (one sequence per forward, as RewardModel does).
// Shapes: question RM = one image + 60 text tokens, one forward per sample;
//         answer RM   = one image + 3 turns of 150 text tokens, image encoded once, 3 forwards.
// Model: LLaVA-shaped random fp32 model (LLM hidden 1024, 8 layers, 16 heads, intermediate
// 2816, vocab 32000; ViT hidden 1024, intermediate 4096, 16 heads, 336 px, patch 14 = 576
// patches) but only 4 vision layers (of which 3 run: select layer -2), to keep it short.
// Usage: reward_bench [THREADS] [SCRATCH_DIR]   (unset OPENBLAS_CORETYPE for this command only)
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "core/engine/engine_runtime.h"
#include "core/engine/llava_model.h"
#include "bench/bench_model.h"
#include "bench/machine_limits.h"
#include "test/model_fixture.h"

using namespace align2;
using namespace align2::bench;
namespace fs = std::filesystem;

namespace {

struct Times {
  double vision = 0, projector = 0, llm = 0, total = 0;
  std::int64_t samples = 0, forwards = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::stoi(argv[1]) : int(std::thread::hardware_concurrency());
  fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "align2-reward-bench";
  configure_cpu_engine(threads);
  at::manual_seed(0);
  fmt::print("{}\nthreads: {}\n", cpu_and_isa_line(), threads);

  const double peak = matmul_peak(at::kFloat);
  fmt::print("measured fp32 matmul peak (2048^3 GEMM, best of 3): {:.1f} GFLOP/s\n", peak / 1e9);

  test::TinyModelOptions o = benchmark_llama();
  o.vision_hidden = 1024;
  o.vision_intermediate = 4096;
  o.vision_layers = 4;
  o.vision_heads = 16;
  o.image_size = 336;
  o.patch_size = 14;
  o.scale = 0.02f;
  fs::path model_dir = dir / "llava-1024x8-vit1024x4";
  if (!fs::exists(model_dir / "model.safetensors")) {
    fmt::print("writing the random model to {}\n", model_dir.string());
    test::write_tiny_model(model_dir.string(), test::TinyLayout::llava_hf4, o);
  }
  LlavaModel model(load_model_spec(model_dir.string()), at::kFloat, at::Device(at::kCPU));
  const ModelSpec& spec = model.spec();

  // FLOP counts (multiply-add = 2).
  const std::int64_t H = spec.llm.hidden_size, L = spec.llm.num_layers, I = spec.llm.intermediate_size;
  const std::int64_t kvd = spec.llm.num_kv_heads * spec.llm.head_dim;
  const double llm_linear_params = double(L) * (2.0 * H * H + 2.0 * H * kvd + 3.0 * H * I);
  auto llm_flops = [&](std::int64_t T) {
    return 2.0 * llm_linear_params * T + 4.0 * double(L) * double(T) * T * H;
  };
  const std::int64_t Hv = spec.vision.hidden_size, Iv = spec.vision.intermediate_size;
  const std::int64_t P = spec.vision.num_patches(), ps = spec.vision.patch_size;
  const std::int64_t Lv_all = spec.vision.num_layers;
  const std::int64_t Lv = spec.vision_select_layer < 0 ? Lv_all + 1 + spec.vision_select_layer : spec.vision_select_layer;
  const double vision_layer_params = 4.0 * Hv * Hv + 2.0 * Hv * Iv;
  const double vision_flops = 2.0 * Lv * vision_layer_params * double(P + 1) + 4.0 * double(Lv) * double(P + 1) * (P + 1) * Hv +
                              2.0 * (3.0 * ps * ps * Hv) * double(P);  // encoder layers + patch-embedding conv
  const double projector_flops = 2.0 * (double(Hv) * H + double(H) * H) * double(P);
  fmt::print("model: LLM hidden {} x {} layers, {} heads, intermediate {}, vocab {}; ViT hidden {}, intermediate {}, "
             "{} heads, {} patches, {} layers written, {} run (select layer {}; a real ViT-L/14-336 runs 23 of 24)\n",
             H, L, spec.llm.num_heads, I, spec.llm.vocab_size, Hv, Iv, spec.vision.num_heads, P, Lv_all, Lv,
             spec.vision_select_layer);

  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::int64_t> token(3, spec.llm.vocab_size - 2);  // never the placeholder (vocab - 1)
  auto text_ids = [&](std::int64_t n) {
    std::vector<std::int64_t> ids{spec.llm.bos_token_id, spec.image_token_index};
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t id = token(rng);
      if (id == spec.image_token_index) id = 3;
      ids.push_back(id);
    }
    return ids;
  };
  at::Tensor score_w = at::randn({H}) * 0.02;

  // One sample: one image, `turns` texts of `text_tokens` ids each. Adds phase times to `t`.
  float sink = 0;
  auto run_sample = [&](std::int64_t turns, std::int64_t text_tokens, Times& t) {
    at::Tensor pixels = at::randn({1, 3, spec.vision.image_size, spec.vision.image_size});
    double t0 = now_s();
    at::Tensor vh = model.encode_images(pixels);
    double t1 = now_s();
    at::Tensor features = model.project(vh).squeeze(0);
    double t2 = now_s();
    for (std::int64_t k = 0; k < turns; ++k) {
      std::vector<std::int64_t> ids = text_ids(text_tokens);
      at::Tensor embeds = model.splice(ids, {features});
      at::Tensor hidden = model.last_hidden({embeds}).squeeze(0).to(at::kFloat);
      sink += at::dot(hidden, score_w).item<float>();
    }
    double t3 = now_s();
    t.vision += t1 - t0;
    t.projector += t2 - t1;
    t.llm += t3 - t2;
    t.total += t3 - t0;
    t.samples += 1;
    t.forwards += turns;
  };

  struct Shape {
    const char* name;
    std::int64_t turns, text_tokens, samples;
  };
  for (const Shape& s : {Shape{"question RM", 1, 60, 5}, Shape{"answer RM", 3, 150, 3}}) {
    Times warm, t;
    run_sample(s.turns, s.text_tokens, warm);  // warm-up (allocator, OpenBLAS buffers)
    for (std::int64_t i = 0; i < s.samples; ++i) run_sample(s.turns, s.text_tokens, t);
    const std::int64_t T = 1 + P + s.text_tokens;  // BOS + image patches + text ids
    const double lf = double(t.forwards) * llm_flops(T), vf = double(t.samples) * vision_flops,
                 pf = double(t.samples) * projector_flops;
    fmt::print("{}: {} samples timed after 1 warm-up; per sample 1 image + {} x (BOS + {} patches + {} text ids = {} "
               "positions), one sequence per forward\n",
               s.name, t.samples, s.turns, P, s.text_tokens, T);
    fmt::print("  {:.3f} samples/s ({:.3f} s/sample: vision tower {:.3f} s, projector {:.3f} s, LLM forwards + "
               "splice + score {:.3f} s)\n",
               t.samples / t.total, t.total / t.samples, t.vision / t.samples, t.projector / t.samples,
               t.llm / t.samples);
    fmt::print("  LLM:          {:.1f} GFLOP/s = {:.0f}% of the measured fp32 peak ({:.1f} GFLOP per forward)\n",
               lf / t.llm / 1e9, 100.0 * lf / t.llm / peak, llm_flops(T) / 1e9);
    fmt::print("  vision tower: {:.1f} GFLOP/s = {:.0f}% of the measured fp32 peak ({:.1f} GFLOP per image, {} layers)\n",
               vf / t.vision / 1e9, 100.0 * vf / t.vision / peak, vision_flops / 1e9, Lv);
    fmt::print("  projector:    {:.1f} GFLOP/s = {:.0f}% of the measured fp32 peak ({:.2f} GFLOP per image)\n",
               pf / t.projector / 1e9, 100.0 * pf / t.projector / peak, projector_flops / 1e9);
    fmt::print("  whole sample: {:.1f} GFLOP/s = {:.0f}% of the measured fp32 peak\n", (lf + vf + pf) / t.total / 1e9,
               100.0 * (lf + vf + pf) / t.total / peak);
  }
  // Batched forwards (job key score_batch): B question-RM sequences of different lengths
  // (60..60+7(B-1) text ids), right-padded in one forward, against the same B one at a time.
  // Which is faster on this CPU decides score_batch's CPU default (docs/gpu.md).
  {
    at::Tensor features = model.project(model.encode_images(at::randn({1, 3, spec.vision.image_size,
                                                                     spec.vision.image_size}))).squeeze(0);
    for (std::int64_t B : {4, 8}) {
      std::vector<at::Tensor> sequences;
      double useful = 0;  // FLOPs of the B sequences at their own lengths
      for (std::int64_t b = 0; b < B; ++b) {
        sequences.push_back(model.splice(text_ids(60 + 7 * b), {features}));
        useful += llm_flops(sequences.back().size(0));
      }
      model.last_hidden(sequences);  // warm-up
      const double one_by_one = best_time(2, [&] {
        for (const at::Tensor& seq : sequences) sink += model.last_hidden({seq}).sum().item<float>();
      });
      const double batched = best_time(2, [&] { sink += model.last_hidden(sequences).sum().item<float>(); });
      fmt::print("batched forwards, question RM, {} sequences of {}..{} positions: one per forward {:.3f} s "
                 "({:.0f}% of the fp32 peak), one padded forward {:.3f} s ({:.0f}%): batched / one-by-one time {:.2f}\n",
                 B, sequences.front().size(0), sequences.back().size(0), one_by_one, 100.0 * useful / one_by_one / peak,
                 batched, 100.0 * useful / batched / peak, batched / one_by_one);
    }
  }
  if (sink == 12345.f) fmt::print("\n");  // keep the scores alive
  return 0;
}
