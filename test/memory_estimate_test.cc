// The memory a model will take, read off its checkpoint headers before loading, and the
// refusal with both figures when a rank cannot hold it (core/model/memory_estimate.h).
#include "core/model/memory_estimate.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/model/model_config.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

// The data bytes of a .safetensors file: its size less the 8-byte length and the header.
std::uint64_t data_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::uint64_t header = 0;
  in.read(reinterpret_cast<char*>(&header), 8);
  return std::uint64_t(fs::file_size(file)) - 8 - header;
}

TEST(MemoryEstimate, WeightsAreTheCheckpointsAtTheRunDtype) {
  const std::string dir = test::scratch_dir("memory-estimate") + "/llava";
  test::write_tiny_model(dir, test::TinyLayout::llava_hf4, {});  // float32 weights
  const ModelSpec spec = load_model_spec(dir);
  const std::uint64_t stored = data_bytes(fs::path(dir) / "model.safetensors");
  const MemoryEstimate f32 = estimate_model_memory(spec, 4, 64, 1, false);
  const MemoryEstimate bf16 = estimate_model_memory(spec, 2, 64, 1, false);
  EXPECT_EQ(f32.weights, stored);
  EXPECT_EQ(bf16.weights, stored / 2);
  // Working memory grows with positions and sequences; a KV cache adds 2 x layers x positions
  // x kv width x run bytes per sequence.
  EXPECT_GT(estimate_model_memory(spec, 4, 128, 1, false).working, f32.working);
  const MemoryEstimate batch = estimate_model_memory(spec, 4, 64, 3, false);
  EXPECT_EQ(batch.working - (512ull << 20), 3 * (f32.working - (512ull << 20)));
  const MemoryEstimate kv = estimate_model_memory(spec, 4, 64, 3, true);
  const LlamaConfig& c = spec.llm;
  EXPECT_EQ(kv.working - batch.working, 3 * 2 * std::uint64_t(c.num_layers) * 64 * std::uint64_t(c.num_kv_heads * c.head_dim) * 4);
}

TEST(MemoryEstimate, RefusedWithBothFiguresWhenTheRankCannotHoldIt) {
  MemoryEstimate e;
  e.weights = 14ull << 30;
  e.working = 2ull << 30;
  EXPECT_NO_THROW(require_memory(e, MemoryBudget{0, "unknown"}, "m"));       // unknown: not checked
  EXPECT_NO_THROW(require_memory(e, MemoryBudget{17ull << 30, "test"}, "m"));
  try {
    require_memory(e, MemoryBudget{12ull << 30, "MemAvailable 24.0 GiB, shared by 2 ranks on this node"},
                   "the question reward model rm/q");
    FAIL() << "not refused";
  } catch (const std::runtime_error& err) {
    const std::string what = err.what();
    EXPECT_NE(what.find("the question reward model rm/q needs about 16.0 GiB (14.0 GiB of weights + 2.0 GiB working)"),
              std::string::npos) << what;
    EXPECT_NE(what.find("this rank may use 12.0 GiB (MemAvailable 24.0 GiB, shared by 2 ranks on this node)"),
              std::string::npos) << what;
  }
}

TEST(MemoryEstimate, TheRankBudgetIsTheNodesShare) {
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  ::unsetenv("SLURM_NTASKS_PER_NODE");
  const MemoryBudget one = rank_memory_budget();
  EXPECT_GT(one.bytes, 0u) << one.how;  // Linux has MemAvailable
  ::setenv("SLURM_NTASKS_PER_NODE", "4(x2)", 1);
  EXPECT_EQ(ranks_on_node(), 4);
  const MemoryBudget four = rank_memory_budget();
  EXPECT_NE(four.how.find("shared by 4 ranks on this node"), std::string::npos) << four.how;
  EXPECT_LT(four.bytes, one.bytes / 2);  // a quarter, give or take what changed meanwhile
  ::unsetenv("SLURM_NTASKS_PER_NODE");
}

}  // namespace
}  // namespace align2
