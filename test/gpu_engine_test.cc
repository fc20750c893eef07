// The engine on a CUDA device (label gpu): reward scores, batched scores and greedy generation
// on the GPU against the CPU's, on a tiny random LLaVA. Every test skips cleanly when libtorch
// has no CUDA, align2 was built without CUDA, or no GPU is visible. Not yet run on a GPU in
// this project (docs/gpu.md).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/engine/engine_runtime.h"
#include "core/engine/generation.h"
#include "core/engine/reward_model.h"
#include "core/model/safetensors.h"
#include "core/reward/reward_text.h"
#include "distributed/nccl_comm.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

#define REQUIRE_GPU()                                                                                 \
  if (!at::hasCUDA() || cuda_device_count() == 0)                                                     \
  GTEST_SKIP() << "needs a GPU and a CUDA libtorch (libtorch CUDA: " << (at::hasCUDA() ? "yes" : "no") \
               << ", GPUs visible: " << cuda_device_count() << ")"

// A tiny LLaVA (liuhaotian layout) and a question reward model on it; returns the model folder.
std::string reward_model_dir() {
  const std::string root = test::scratch_dir("gpu-engine");
  test::write_tiny_model(root + "/base", test::TinyLayout::llava_liuhaotian, {},
                         test::shared_path("models/stories260K-hf/tokenizer.model"));
  fs::create_directories(root + "/rm");
  test::write_file(root + "/rm/reward_config.json",
                   nlohmann::json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", "question"},
                                  {"base_model", "../base"}, {"max_length", 2048}}
                       .dump());
  at::manual_seed(3);
  at::Tensor head = at::randn({1, 32});
  write_safetensors(root + "/rm/score_head.safetensors",
                    {float_tensor("score.weight", {1, 32}, {head.data_ptr<float>(), head.data_ptr<float>() + 32})});
  return root + "/rm";
}

const at::Device kGpu(at::kCUDA, 0);

// fp32 on the GPU equals the CPU within 1e-4 (cuBLAS sums in another order; ATen keeps TF32 off
// for float32 matmuls by default); bf16 on the GPU within 0.05 of fp32 (8-bit mantissas through
// 2 layers of a tiny model whose scores are of order 1); batched GPU scores equal one-per-forward
// GPU scores within 1e-4.
TEST(GpuEngine, RewardScoresMatchTheCpu) {
  REQUIRE_GPU();
  const std::string dir = reward_model_dir();
  RewardModel cpu(dir, at::kFloat, at::Device(at::kCPU)), gpu(dir, at::kFloat, kGpu), half(dir, at::kBFloat16, kGpu);
  at::manual_seed(4);
  const at::Tensor pixels = at::randn({3, 28, 28});
  const std::vector<std::string> texts = {question_rm_text({"What is in the picture?"}),
                                          question_rm_text({"Why is the girl in the park, and who is with her?"})};
  std::vector<RewardInput> batch;
  for (const std::string& text : texts) {
    const float want = cpu.score(text, cpu.image_features(pixels)).score;
    const float got = gpu.score(text, gpu.image_features(pixels)).score;
    EXPECT_NEAR(got, want, 1e-4) << text;
    EXPECT_NEAR(half.score(text, half.image_features(pixels)).score, want, 5e-2) << text;
    batch.push_back({text, gpu.image_features(pixels)});
  }
  const std::vector<RewardScore> batched = gpu.score_batch(batch);
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_NEAR(batched[i].score, gpu.score(batch[i].text, batch[i].features).score, 1e-4);
}

// Greedy decoding of the tiny model's LLM in fp32: the same tokens on the GPU as on the CPU.
TEST(GpuEngine, GreedyGenerationMatchesTheCpu) {
  REQUIRE_GPU();
  const std::string dir = reward_model_dir();
  RewardModel cpu(dir, at::kFloat, at::Device(at::kCPU)), gpu(dir, at::kFloat, kGpu);
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.eos_token_id = -1;  // never stop early
  const at::Tensor ids = at::tensor(std::vector<std::int64_t>{1, 9, 42, 7}, at::TensorOptions().dtype(at::kLong)).view({1, -1});
  const auto a = generate(cpu.llava().llm(), {cpu.llava().llm().embed(ids).squeeze(0)}, {0}, o);
  const auto b = generate(gpu.llava().llm(), {gpu.llava().llm().embed(ids).squeeze(0)}, {0}, o);
  EXPECT_EQ(a.at(0).tokens, b.at(0).tokens);
}

// device cuda takes this process's GPU 0 (one rank, local rank 0); auto does the same.
TEST(GpuEngine, DeviceRequestsTakeTheLocalRanksGpu) {
  REQUIRE_GPU();
  EXPECT_EQ(engine_device(DeviceRequest::cuda), kGpu);
  EXPECT_EQ(engine_device(DeviceRequest::automatic), kGpu);
  EXPECT_TRUE(engine_device(DeviceRequest::cpu).is_cpu());
  EXPECT_EQ(run_dtype("auto", kGpu), at::kBFloat16);
}

// Without a GPU (this is what runs on CPU-only machines): auto means the CPU, cuda is refused
// with the reason, and auto's dtype is f32.
TEST(GpuEngine, WithoutAGpuAutoIsTheCpuAndCudaIsRefused) {
  if (at::hasCUDA() && cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible";
  EXPECT_TRUE(engine_device(DeviceRequest::automatic).is_cpu());
  EXPECT_EQ(run_dtype("auto", at::Device(at::kCPU)), at::kFloat);
  try {
    engine_device(DeviceRequest::cuda);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("device cuda: ", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace align2
