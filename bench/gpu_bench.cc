// Reward-model scoring on a GPU against that GPU's own measured bf16 matmul peak, in one run
// (scripts/gpu-check.sh runs it; docs/gpu.md "The GPU check").
//
// 1. Peak: an 8192 x 8192 x 8192 bf16 at::matmul on random inputs, 10 products per timed run,
//    best of 5 runs (bench/machine_limits.h device_matmul_peak).
// 2. Model: the LLM of LLaVA-1.5-7B (LLaMA hidden 4096, 32 layers, 32 heads, intermediate 11008,
//    vocab 32064), bf16, on the GPU, through the engine's own classes (LlavaModel built from a
//    ModelSpec without vision tower or projector, the text-only LLaVA the engine also serves).
//    Its checkpoint is a sparse safetensors file (the header written, the 13.5 GB of data a hole
//    that reads as zeros and takes no disk), so nothing is drawn or written on the CPU; every
//    weight is then drawn again on the GPU (normal, std 0.02; norm weights 1), since products
//    of zeros run faster than real ones.
// 3. Scoring, as RewardModel::score_batch does it (core/engine/reward_model.cc) minus the
//    tokenizer and the vision tower: per sequence LlavaModel::splice(BOS, <image>, n text ids)
//    with random image features [576, 4096] for the <image> token, then LlavaModel::last_hidden
//    over a batch of `score_batch` sequences (right-padded to the longest, masked), then a float32
//    dot product with a score vector and .item() per sequence. Sequences: 1 + 576 + n positions,
//    n drawn uniformly in [40, 80] (a question-RM text), fixed seed.
//    Timed: `groups` batches per run, best of 3 runs after one warm-up batch.
// FLOPs (multiply-add = 2; the formulas of bench/real_scale.sh and docs/performance.md):
//    per sequence of T positions 2 * P * T + 4 * L * T^2 * H, P = L * (2*H*H + 2*H*Hkv + 3*H*I)
//    the linear weights (no lm_head: a reward model reads the final norm). The attention term
//    counts the full T x T score matrix. Only real positions count (padding does not): FLOP/s and
//    MFU are useful work / time, and MFU = FLOP/s / the peak of step 1.
// Output: readable lines, then one JSON line {"gpu_bench": {...}} (units in the key names).
// Without CUDA in libtorch, or without a visible GPU, prints "gpu_bench: no GPU: skipped (...)"
// and exits 0.
//
// Usage: gpu_bench [--batches 1,8] [--groups N (default 4)] [--layers L (default 32)]
//                  [--scratch DIR (default: the temp dir)] [--peak-n N (default 8192)]
//                  [--device cuda|cpu (default cuda; cpu: a dry run of the same code, e.g.
//                   gpu_bench --device cpu --layers 1 --batches 1 --groups 1 --peak-n 512)]
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/machine_limits.h"
#include "core/engine/llava_model.h"
#include "core/model/model_config.h"

using namespace align2;
using namespace align2::bench;
namespace fs = std::filesystem;

namespace {

// The LLaMA of LLaVA-1.5-7B (llava-hf's vocabulary: 32000 pieces + <image> + <pad> + padding to 32064).
ModelSpec llava7b_llm_spec(const std::string& checkpoint, std::int64_t layers) {
  ModelSpec spec;
  spec.layout = ModelLayout::llama;
  spec.dir = checkpoint;  // a .safetensors file is a checkpoint too (core/model/safetensors.h)
  spec.has_llm = true;
  spec.llm.hidden_size = 4096;
  spec.llm.intermediate_size = 11008;
  spec.llm.num_layers = layers;
  spec.llm.num_heads = 32;
  spec.llm.num_kv_heads = 32;
  spec.llm.head_dim = 128;
  spec.llm.vocab_size = 32064;
  spec.llm.max_positions = 4096;
  spec.llm.rms_norm_eps = 1e-5;
  spec.image_token_index = 32000;
  return spec;
}

// Writes a safetensors file holding every LLM tensor of `spec` in BF16, all zeros, as a header
// followed by a hole of the data's size (no data block is written). Returns its size in bytes.
std::uint64_t write_sparse_checkpoint(const ModelSpec& spec, const std::string& path) {
  const LlamaConfig& c = spec.llm;
  const std::int64_t H = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> tensors = {{"embed_tokens.weight", {c.vocab_size, H}},
                                                                             {"norm.weight", {H}},
                                                                             {"lm_head.weight", {c.vocab_size, H}}};
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("layers.{}.", l);
    tensors.push_back({p + "input_layernorm.weight", {H}});
    tensors.push_back({p + "self_attn.q_proj.weight", {qd, H}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kvd, H}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kvd, H}});
    tensors.push_back({p + "self_attn.o_proj.weight", {H, qd}});
    tensors.push_back({p + "post_attention_layernorm.weight", {H}});
    tensors.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, H}});
    tensors.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, H}});
    tensors.push_back({p + "mlp.down_proj.weight", {H, c.intermediate_size}});
  }
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  std::uint64_t offset = 0;
  for (const auto& [canonical, shape] : tensors) {
    std::uint64_t bytes = 2;
    for (std::int64_t d : shape) bytes *= std::uint64_t(d);
    header[spec.llm_weight(canonical)] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));  // little-endian u64 header length
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
  }
  const std::uint64_t size = 8 + text.size() + offset;
  fs::resize_file(path, size);  // the data: a hole, read back as zeros
  return size;
}

// Every LLM weight drawn again on the device: normal(0, 0.02), norm weights 1.
void randomize(LlamaModel& llm, std::int64_t layers) {
  for (const std::string& name : llm.linear_names()) llm.weight(name).normal_(0.0, 0.02);
  llm.weight("embed_tokens.weight").normal_(0.0, 0.02);
  llm.weight("lm_head.weight").normal_(0.0, 0.02);
  llm.weight("norm.weight").fill_(1.0);
  for (std::int64_t l = 0; l < layers; ++l) {
    llm.weight(fmt::format("layers.{}.input_layernorm.weight", l)).fill_(1.0);
    llm.weight(fmt::format("layers.{}.post_attention_layernorm.weight", l)).fill_(1.0);
  }
}

std::vector<std::int64_t> parse_list(const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(std::stoll(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> batches = {1, 8};
  std::int64_t groups = 4, layers = 32, peak_n = 8192;
  fs::path scratch = fs::temp_directory_path();
  bool cpu = false;
  const char* usage =
      "usage: gpu_bench [--batches 1,8] [--groups N] [--layers L] [--scratch DIR] [--peak-n N] [--device cuda|cpu]\n";
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--batches") batches = parse_list(value());
      else if (a == "--groups") groups = std::stoll(value());
      else if (a == "--layers") layers = std::stoll(value());
      else if (a == "--peak-n") peak_n = std::stoll(value());
      else if (a == "--scratch") scratch = value();
      else if (a == "--device") {
        const std::string d = value();
        if (d != "cuda" && d != "cpu") throw std::invalid_argument("--device " + d + ": expected cuda or cpu");
        cpu = d == "cpu";
      } else throw std::invalid_argument("unknown argument " + a);
    }
  } catch (const std::exception& e) {  // std::invalid_argument, std::out_of_range from stoll
    fmt::print(stderr, "gpu_bench: {}\n{}", e.what(), usage);
    return 2;
  }
  if (batches.empty() || groups < 1 || layers < 1 || peak_n < 1 ||
      std::any_of(batches.begin(), batches.end(), [](std::int64_t b) { return b < 1; })) {
    fmt::print(stderr, "gpu_bench: --batches, --groups, --layers and --peak-n must be positive\n{}", usage);
    return 2;
  }

  // --- a GPU, or a clean skip -------------------------------------------------------------------
  const at::Device gpu = cpu ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0);
  if (!cpu && !at::hasCUDA()) {
    fmt::print("gpu_bench: no GPU: skipped (this libtorch was built without CUDA)\n");
    return 0;
  }
  try {
    device_sync(at::ones({1}, at::TensorOptions().device(gpu)));
  } catch (const std::exception& e) {
    fmt::print("gpu_bench: no GPU: skipped (libtorch has CUDA but no device answered: {})\n",
               std::string(e.what()).substr(0, 200));
    return 0;
  }
  at::manual_seed(0);

  // --- 1. this GPU's bf16 matmul peak -----------------------------------------------------------
  const double peak = device_matmul_peak(at::kBFloat16, gpu, peak_n);
  fmt::print("measured bf16 matmul peak ({0}x{0}x{0} at::matmul, random inputs, best of 5 x 10): {1:.1f} TFLOP/s\n",
             peak_n, peak / 1e12);

  // --- 2. the 7B LLM on the GPU -----------------------------------------------------------------
  const fs::path ckpt = scratch / fmt::format("align2-gpu-bench-{}.safetensors", ::getpid());
  const ModelSpec spec = llava7b_llm_spec(ckpt.string(), layers);
  double t0 = now_s();
  const std::uint64_t file_bytes = write_sparse_checkpoint(spec, ckpt.string());
  std::unique_ptr<LlavaModel> model;
  try {
    model = std::make_unique<LlavaModel>(spec, at::kBFloat16, gpu);
  } catch (...) {
    fs::remove(ckpt);
    throw;
  }
  fs::remove(ckpt);
  device_sync(model->llm().weight("norm.weight"));
  const double load_s = now_s() - t0;
  t0 = now_s();
  randomize(model->llm(), layers);
  device_sync(model->llm().weight("norm.weight"));
  const double draw_s = now_s() - t0;
  const LlamaConfig& c = spec.llm;
  const std::int64_t H = c.hidden_size, L = c.num_layers, I = c.intermediate_size, kvd = c.num_kv_heads * c.head_dim;
  const double P = double(L) * (2.0 * H * H + 2.0 * H * kvd + 3.0 * H * I);
  fmt::print("model: LLaMA hidden {}, {} layers, {} heads, intermediate {}, vocab {}: {:.2f} G linear weights, bf16 on {}; "
             "loaded from a {:.1f} GB sparse checkpoint in {:.1f} s, redrawn on {} in {:.1f} s\n",
             H, L, c.num_heads, I, c.vocab_size, P / 1e9, gpu.str(), double(file_bytes) / 1e9, load_s, gpu.str(), draw_s);
  auto llm_flops = [&](std::int64_t T) { return 2.0 * P * double(T) + 4.0 * double(L) * double(T) * double(T) * double(H); };

  // --- 3. scoring ---------------------------------------------------------------------------------
  const std::int64_t image_positions = 576;
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::int64_t> text_len(40, 80), token(3, 31999);
  const at::Tensor score_w = at::randn({H}, at::TensorOptions().device(gpu)) * 0.02;  // float32, as RewardModel's
  const at::TensorOptions bf16 = at::TensorOptions().dtype(at::kBFloat16).device(gpu);
  struct Sequence {
    std::vector<std::int64_t> ids;
    at::Tensor features;
  };
  auto make_batch = [&](std::int64_t n) {
    std::vector<Sequence> out;
    for (std::int64_t i = 0; i < n; ++i) {
      Sequence s;
      s.ids = {c.bos_token_id, spec.image_token_index};
      for (std::int64_t k = text_len(rng); k > 0; --k) s.ids.push_back(token(rng));
      s.features = at::randn({image_positions, H}, bf16) * 0.5;
      out.push_back(std::move(s));
    }
    return out;
  };
  float sink = 0;
  // One forward over `batch`, as RewardModel::score_batch: splice, last_hidden, dot + .item() per row.
  auto score = [&](const std::vector<Sequence>& batch) {
    std::vector<at::Tensor> sequences;
    for (const Sequence& s : batch) sequences.push_back(model->splice(s.ids, {s.features}));
    at::Tensor hidden = model->last_hidden(sequences).to(at::kFloat);
    for (std::int64_t i = 0; i < std::int64_t(batch.size()); ++i) sink += at::dot(hidden[i], score_w).item<float>();
  };

  nlohmann::json results = nlohmann::json::array();
  for (std::int64_t B : batches) {
    std::vector<std::vector<Sequence>> work;
    for (std::int64_t g = 0; g < groups; ++g) work.push_back(make_batch(B));
    double useful = 0, padded = 0;
    std::int64_t tokens = 0;
    for (const auto& batch : work) {
      std::int64_t longest = 0;
      for (const Sequence& s : batch) {
        const std::int64_t T = std::int64_t(s.ids.size()) - 1 + image_positions;
        useful += llm_flops(T);
        tokens += T;
        longest = std::max(longest, T);
      }
      padded += double(B) * llm_flops(longest);
    }
    score(work.front());  // warm-up: cuBLAS handles, allocator, kernel selection
    const double t = best_time(3, [&] {
      for (const auto& batch : work) score(batch);
    });
    const double sequences = double(B * groups);
    fmt::print("score_batch {}: {} batches of {} sequences (1 + {} image + 40..80 text positions): {:.3f} s; "
               "{:.1f} sequences/s, {:.0f} tokens/s, {:.1f} TFLOP/s useful = {:.1f}% of the measured peak "
               "({:.1f}% with padding)\n",
               B, groups, B, image_positions, t, sequences / t, double(tokens) / t, useful / t / 1e12,
               100.0 * useful / t / peak, 100.0 * padded / t / peak);
    results.push_back({{"score_batch", B},
                       {"batches", groups},
                       {"sequences", B * groups},
                       {"tokens", tokens},
                       {"seconds", t},
                       {"sequences_per_s", sequences / t},
                       {"tokens_per_s", double(tokens) / t},
                       {"tflop_per_s", useful / t / 1e12},
                       {"mfu", useful / t / peak},
                       {"mfu_with_padding", padded / t / peak}});
  }
  if (sink == 12345.f) fmt::print("\n");  // keeps the scores alive
  nlohmann::json out = {{"gpu_bench",
                         {{"device", gpu.str()},
                          {"dtype", "bf16"},
                          {"peak_bf16_tflop_per_s", peak / 1e12},
                          {"peak_matmul_n", peak_n},
                          {"model", {{"hidden", H}, {"layers", L}, {"heads", c.num_heads}, {"intermediate", I},
                                     {"vocab", c.vocab_size}, {"linear_params", P}}},
                          {"image_positions", image_positions},
                          {"text_positions", {40, 80}},
                          {"load_s", load_s},
                          {"draw_s", draw_s},
                          {"runs", results}}}};
  fmt::print("{}\n", out.dump());
  return 0;
}
