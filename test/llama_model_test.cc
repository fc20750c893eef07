// The LLaMA engine on the REAL trained tiny model in ../shared (stories260K: dim 64,
// 5 layers, 8 heads, 4 KV heads, vocab 512, tied embeddings).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <fstream>
#include <iostream>

#include "core/engine/generation.h"
#include "core/engine/llama_model.h"
#include "core/model/model_config.h"
#include "core/model/tokenizer.h"
#include "kernels/linear_rows.h"
#include "test/test_support.h"

namespace align2 {
namespace {

struct Tiny {
  ModelSpec spec;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<LlamaModel> model;
};

Tiny load_tiny(at::ScalarType dtype = at::kFloat) {
  at::set_num_threads(1);  // tiny model; ctest runs tests side by side
  Tiny t;
  t.spec = load_model_spec(test::shared_path("models/stories260K-hf"));
  t.ckpt = std::make_unique<Checkpoint>(t.spec.dir);
  t.model = std::make_unique<LlamaModel>(t.spec, *t.ckpt, dtype, at::Device(at::kCPU));
  return t;
}

at::Tensor embed_ids(const LlamaModel& m, const std::vector<std::int64_t>& ids) {
  return m.embed(at::tensor(ids, at::TensorOptions().dtype(at::kLong)).view({1, -1})).squeeze(0);
}

std::vector<std::int64_t> greedy(const LlamaModel& m, const std::vector<std::int64_t>& prompt, std::int64_t n,
                                 at::Tensor* logits = nullptr) {
  GenerationOptions o;
  o.max_new_tokens = n;
  o.keep_logits = logits != nullptr;
  o.eos_token_id = 2;
  auto r = generate(m, {embed_ids(m, prompt)}, {0}, o);
  if (logits) *logits = r[0].logits;
  return r[0].tokens;
}

TEST(LlamaModel, GreedyFromBosWritesTheTinyStory) {
  Tiny t = load_tiny();
  std::vector<std::int64_t> tokens = greedy(*t.model, {1}, 40);
  Tokenizer tok = Tokenizer::load(test::shared_path("models/stories260K-hf/tokenizer.model"));
  std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
  std::string text = tok.decode(ids);
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << text;
}

TEST(LlamaModel, LogitsMatchAnIndependentNumpyForward) {
  Tiny t = load_tiny();
  std::vector<std::int64_t> prompt = {1, 400, 261, 300};  // BOS and a few ids
  at::Tensor logits;
  std::vector<std::int64_t> gen = greedy(*t.model, prompt, 20, &logits);
  std::vector<std::int64_t> fed = prompt;
  fed.insert(fed.end(), gen.begin(), gen.end() - 1);
  ASSERT_EQ(logits.size(0), std::int64_t(fed.size()));
  std::string out = test::scratch_dir("numpy") + "/logits.f32";
  std::string cmd = "/usr/bin/python3 " + test::source_path("test/reference/llama_numpy.py") + " " + t.spec.dir + " " + out;
  for (auto id : fed) cmd += " " + std::to_string(id);
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string raw = test::read_file(out);
  ASSERT_EQ(raw.size(), fed.size() * 512 * sizeof(float));
  at::Tensor ref = at::from_blob(raw.data(), {std::int64_t(fed.size()), 512}, at::kFloat).clone();
  double diff = (logits - ref).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4) << "max |align2 - numpy| over " << fed.size() << " positions";
}

TEST(LlamaModel, KvCacheGenerationEqualsFullRecomputation) {
  // Decode runs fused kernels (kernels/rms_norm, rope, decode_attention), the full forward ATen
  // ops: float32 agrees to rounding; bfloat16 to its own precision (8 bits), with the same text.
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    Tiny t = load_tiny(dtype);
    at::Tensor cached;
    std::vector<std::int64_t> gen = greedy(*t.model, {1, 300}, 24, &cached);
    std::vector<std::int64_t> fed = {1, 300};
    fed.insert(fed.end(), gen.begin(), gen.end() - 1);
    at::Tensor e = embed_ids(*t.model, fed).unsqueeze(0);
    at::Tensor full = t.model->logits(t.model->forward(e, at::tensor({std::int64_t(fed.size())}))).squeeze(0);
    const double diff = (full - cached).abs().max().item<double>(), scale = full.abs().max().item<double>();
    if (dtype == at::kFloat) {
      EXPECT_LE(diff, 5e-5);  // logits are O(10)
    } else {
      EXPECT_LE(diff, 0.03 * scale) << "bf16";
      // Greedy choices from the recomputed logits: the same tokens wherever the top two differ
      // by more than the bf16 noise.
      at::Tensor top = std::get<0>(full.topk(2, -1));
      for (std::size_t i = 1; i < fed.size(); ++i) {
        const std::int64_t p = std::int64_t(i) - 1;
        if ((top[p][0] - top[p][1]).item<double>() > 0.1 * scale) {
          EXPECT_EQ(full[p].argmax().item<std::int64_t>(), fed[i]) << "bf16 position " << i;
        }
      }
    }
  }
}

const std::vector<std::vector<std::int64_t>> kBatchPrompts = {{1}, {1, 400, 261, 300, 290, 310}, {1, 42, 43}};
const std::vector<std::uint64_t> kBatchSeeds = {11, 22, 33};

// Samples (T = 0.9, top-p 0.95) kBatchPrompts together and each alone: a sequence's tokens do
// not depend on its batchmates. Returns the batch's results and, in *alone, each alone.
std::vector<GenerationResult> together_and_alone(const LlamaModel& m, GenerationOptions o,
                                                 std::vector<GenerationResult>* alone, bool same_tokens = true) {
  o.temperature = 0.9;
  o.top_p = 0.95;
  std::vector<at::Tensor> embeds;
  for (auto& p : kBatchPrompts) embeds.push_back(embed_ids(m, p));
  auto together = generate(m, embeds, kBatchSeeds, o);
  for (std::size_t i = 0; i < kBatchPrompts.size(); ++i) {
    alone->push_back(generate(m, {embeds[i]}, {kBatchSeeds[i]}, o)[0]);
    if (same_tokens) EXPECT_EQ(alone->back().tokens, together[i].tokens) << "prompt " << i;
  }
  return together;
}

TEST(LlamaModel, BatchedEqualsUnbatchedAndSamplingIgnoresBatchmatesInBfloat16) {
  // The bf16 decode path (fused kernels, bf16 x bf16 linear_rows) with rows of different
  // lengths.
  Tiny t = load_tiny(at::kBFloat16);
  GenerationOptions o;
  o.max_new_tokens = 24;
  o.keep_logits = true;
  std::vector<GenerationResult> alone;
  auto together = together_and_alone(*t.model, o, &alone, /*same_tokens=*/false);
  for (std::size_t i = 0; i < alone.size(); ++i) {
    // Decode computes each row alone in a fixed order; the prefill that filled the cache is an
    // ATen forward over the padded batch, whose last bits depend on the batch's shape (which is
    // why the rewrite stage generates in fixed groups): the logits agree to bf16 precision. So a
    // sampled token can flip where the draw falls between two nearly equal probabilities (seen
    // on an AVX2-only EPYC, not on AVX-512 machines): the logits must agree on every position up
    // to and including the step that drew the first different token; after it the sequences
    // differ and so do their logits.
    const std::vector<std::int64_t>& a = alone[i].tokens;
    const std::vector<std::int64_t>& b = together[i].tokens;
    std::size_t same = 0;
    while (same < a.size() && same < b.size() && a[same] == b[same]) ++same;
    const std::int64_t prompt = std::int64_t(kBatchPrompts[i].size());
    const std::int64_t rows = std::min({alone[i].logits.size(0), together[i].logits.size(0),
                                        prompt + std::int64_t(same)});  // rows that drew token `same`, and before
    ASSERT_GE(rows, prompt) << "prompt " << i;
    const at::Tensor x = alone[i].logits.slice(0, 0, rows), y = together[i].logits.slice(0, 0, rows);
    const double scale = x.abs().max().item<double>();
    EXPECT_LE((x - y).abs().max().item<double>(), 0.03 * scale) << "prompt " << i << ", first " << rows << " rows";
    if (same < a.size()) std::cout << "prompt " << i << ": tokens agree up to step " << same << " of " << a.size() << "\n";
  }
}

TEST(LlamaModel, BatchedEqualsUnbatchedAndSamplingIgnoresBatchmates) {
  Tiny t = load_tiny();
  GenerationOptions o;
  o.max_new_tokens = 16;
  std::vector<GenerationResult> alone;
  auto together = together_and_alone(*t.model, o, &alone);
  std::vector<at::Tensor> embeds;
  for (auto& p : kBatchPrompts) embeds.push_back(embed_ids(*t.model, p));
  o.temperature = 0.9;
  o.top_p = 0.95;
  // Another seed gives another text (with overwhelming probability at T=0.9).
  auto other = generate(*t.model, {embeds[1]}, {23}, o);
  EXPECT_NE(other[0].tokens, together[1].tokens);
  // Last hidden states: batched vs alone.
  std::int64_t T = 6;
  at::Tensor batch = at::zeros({3, T, 64});
  std::vector<std::int64_t> lens;
  for (std::size_t i = 0; i < 3; ++i) {
    batch[std::int64_t(i)].narrow(0, 0, embeds[i].size(0)).copy_(embeds[i]);
    lens.push_back(embeds[i].size(0));
  }
  at::Tensor hb = t.model->forward(batch, at::tensor(lens));
  for (std::size_t i = 0; i < 3; ++i) {
    at::Tensor ha = t.model->forward(embeds[i].unsqueeze(0), at::tensor({lens[i]}));
    EXPECT_LE((hb[std::int64_t(i)].narrow(0, 0, lens[i]) - ha[0]).abs().max().item<double>(), 1e-5);
  }
}

TEST(LlamaModel, Bfloat16StaysCloseToFloat32) {
  Tiny f = load_tiny(at::kFloat), b = load_tiny(at::kBFloat16);
  std::vector<std::int64_t> ids = {1, 400, 261, 300, 290, 310, 320};
  at::Tensor ef = embed_ids(*f.model, ids).unsqueeze(0), eb = embed_ids(*b.model, ids).unsqueeze(0);
  at::Tensor lf = f.model->logits(f.model->forward(ef, at::tensor({7L})));
  at::Tensor lb = b.model->logits(b.model->forward(eb, at::tensor({7L})));
  double scale = lf.abs().max().item<double>();
  EXPECT_LE((lf - lb).abs().max().item<double>(), 0.05 * scale);
  EXPECT_TRUE(at::equal(lf.argmax(-1), lb.argmax(-1)));
}

TEST(LinearRows, Bf16RowsTakeTheKernelOrTheGemmAsConfigured) {
  // ctest runs this binary as it is and again with ALIGN2_BF16_ROWS_GEMM_MIN=2 (the route an
  // AMX CPU takes from 16 rows): below the threshold the rows are the kernel's, bit for bit;
  // from it on, and above kLinearRowsMax, they are ATen's GEMM's, bit for bit.
  const std::int64_t from = bf16_rows_gemm_min();
  std::cout << "bf16 rows go to ATen's GEMM from " << from << " rows\n";
  ASSERT_GE(from, 2);  // batch 1 always streams the weights
  at::manual_seed(3);
  const std::int64_t N = 37, K = 1031;
  const at::Tensor w = at::randn({N, K}).to(at::kBFloat16);
  for (std::int64_t M : {1, 2, 15, 16, 17, 64, 65}) {
    const at::Tensor x = at::randn({M, K}).to(at::kBFloat16);
    at::Tensor want;
    if (M >= from || M > kLinearRowsMax) {
      want = dense_linear(x, w);
    } else {
      at::Tensor sums = at::empty({M, N});
      linear_rows_bf16_bf16_reference(reinterpret_cast<const std::uint16_t*>(x.data_ptr<at::BFloat16>()),
                                      reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>()),
                                      sums.data_ptr<float>(), M, N, K, N);
      want = sums.to(at::kBFloat16);
    }
    EXPECT_TRUE(at::equal(linear_rows(x, w), want)) << M << " rows";
  }
}

TEST(Generation, SamplingRule) {
  GenerationOptions greedy_o;
  std::vector<float> logits = {0.1f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(sample_token(logits.data(), 4, greedy_o, 1, 0), 1);  // lowest id on ties
  GenerationOptions nucleus;
  nucleus.temperature = 1.0;
  nucleus.top_p = 0.5;  // the top token alone holds >= 0.5 of the mass
  std::vector<float> peaked = {5.0f, 0.0f, 0.0f, 0.0f};
  for (std::uint64_t s = 0; s < 50; ++s) EXPECT_EQ(sample_token(peaked.data(), 4, nucleus, s, 3), 0);
  // Full distribution: frequencies follow the softmax.
  GenerationOptions full;
  full.temperature = 1.0;
  std::vector<float> two = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  int ones = 0;
  for (std::uint64_t s = 0; s < 4000; ++s) ones += sample_token(two.data(), 2, full, s, 0) == 1;
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

TEST(GenerateCli, WritesTheStoryAndItsLogits) {
  std::string dir = test::shared_path("models/stories260K-hf");
  std::string out = test::scratch_dir("generate-cli") + "/logits.safetensors";
  auto r = test::run_command(test::align2_bin() + " generate --threads 1 --model " + dir +
                             " --prompt '' --max-new-tokens 20 --logits-out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
  Checkpoint logits(out);
  // BOS + 20 generated tokens, the last of which is never fed: 20 positions.
  const TensorView& l = logits.get("logits", {20, 512});
  EXPECT_EQ(l.dtype, DType::f32);
  // A prompt continues with its own spacing.
  r = test::run_command(test::align2_bin() + " generate --threads 1 --model " + dir +
                        " --prompt 'Once upon a time' --max-new-tokens 6");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(", there was a little", 0), 0u) << r.out;
  // Sampling is reproducible by seed.
  std::string cmd = test::align2_bin() + " generate --threads 1 --model " + dir +
                    " --prompt 'Tom' --max-new-tokens 12 --temperature 1.0 --top-p 0.9 --seed ";
  EXPECT_EQ(test::run_command(cmd + "5").out, test::run_command(cmd + "5").out);
  EXPECT_EQ(test::run_command(test::align2_bin() + " generate --model " + dir).exit_code, 2);
}

}  // namespace
}  // namespace align2
