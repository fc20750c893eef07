// Data-parallel reward training: np = 2 with batch b equals np = 1 with batch 2b (up to
// float summation order), under mpirun -np 2.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/engine/reward_training.h"
#include "core/model/safetensors.h"
#include "distributed/mpi_comm.h"
#include "test/model_fixture.h"
#include "test/reward_training_fixture.h"

namespace align2 {
namespace {

std::vector<float> values(const std::string& file, const std::string& name) {
  Checkpoint c(file);
  const TensorView& v = c.get(name);
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  to_float32(v, out.data());
  return out;
}

TEST(RewardTrainingMpi, TwoRanksEqualOneRankWithTwiceTheBatch) {
  at::set_num_threads(1);
  MpiComm comm;
  std::vector<std::uint8_t> root_bytes;
  if (comm.rank() == 0) {
    std::string root = test::scratch_dir("rm-train-mpi");
    test::write_tiny_model(root + "/base", test::TinyLayout::llama, {},
                           test::shared_path("models/stories260K-hf/tokenizer.model"));
    test::write_colour_pairs(root + "/train.jsonl", 48, 4);
    root_bytes.assign(root.begin(), root.end());
  }
  comm.broadcast(root_bytes, 0);
  std::string root(root_bytes.begin(), root_bytes.end());

  RewardTrainOptions o;
  o.kind = RewardKind::answer;
  o.base_model = root + "/base";
  o.data = root + "/train.jsonl";
  o.lora_r = 4;
  o.lora_alpha = 8;
  o.lr = 5e-3;
  o.epochs = 2;
  o.pairs_per_step = 0;  // one batch per step
  o.augment_rate = 0;
  o.seed = 3;
  o.batch_size = 8 / comm.size();
  o.output_dir = root + "/np" + std::to_string(comm.size());
  RewardTrainResult many = train_reward_model(comm, o, {});
  EXPECT_EQ(many.steps, 2 * 6);

  if (comm.rank() == 0) {
    LocalComm one;
    RewardTrainOptions single = o;
    single.batch_size = 8;
    single.output_dir = root + "/np1";
    RewardTrainResult r1 = train_reward_model(one, single, {});
    EXPECT_NEAR(r1.last_loss, many.last_loss, 1e-5);
    for (const char* name : {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                             "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"}) {
      std::vector<float> a = values(o.output_dir + "/adapter_model.safetensors", name);
      std::vector<float> b = values(single.output_dir + "/adapter_model.safetensors", name);
      ASSERT_EQ(a.size(), b.size());
      float diff = 0;
      for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
      EXPECT_LE(diff, 1e-5) << name;
    }
    std::vector<float> ha = values(o.output_dir + "/score_head.safetensors", "score.weight");
    std::vector<float> hb = values(single.output_dir + "/score_head.safetensors", "score.weight");
    for (std::size_t i = 0; i < ha.size(); ++i) EXPECT_NEAR(ha[i], hb[i], 1e-5);
  }
  comm.barrier();
}

}  // namespace
}  // namespace align2
