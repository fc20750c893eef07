// Reward-model training on a tiny model: a learnable preference is learned, resume gives
// the same weights as an uninterrupted run, and the trained folder (PEFT adapter) loads,
// scores and merges.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <filesystem>
#include <iostream>

#include "core/engine/reward_training.h"
#include "core/model/safetensors.h"
#include "test/model_fixture.h"
#include "test/reward_training_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

struct TrainSetup {
  std::string root, base;
  TrainSetup() {
    at::set_num_threads(1);
    root = test::scratch_dir("rm-train");
    base = root + "/base";
    test::TinyModelOptions o;
    o.seed = 3;
    test::write_tiny_model(base, test::TinyLayout::llava_hf4, o, test::shared_path("models/stories260K-hf/tokenizer.model"));
    test::write_colour_pairs(root + "/train.jsonl", 160, 1);
    test::write_colour_pairs(root + "/eval.jsonl", 100, 2);
  }
  RewardTrainOptions options(const std::string& out) const {
    RewardTrainOptions t;
    t.kind = RewardKind::answer;
    t.base_model = base;
    t.data = root + "/train.jsonl";
    t.eval = root + "/eval.jsonl";
    t.output_dir = out;
    t.lora_r = 8;
    t.lora_alpha = 16;
    t.lora_dropout = 0.05;
    t.lr = 5e-3;
    t.projector_lr = 5e-3;
    t.batch_size = 8;
    t.pairs_per_step = 0;  // one batch per step
    t.augment_rate = 0;
    t.epochs = 4;
    t.warmup_ratio = 0.1;
    t.seed = 9;
    return t;
  }
};

std::vector<float> tensor_values(const std::string& file, const std::string& name) {
  Checkpoint c(file);
  const TensorView& v = c.get(name);
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  to_float32(v, out.data());
  return out;
}

TEST(RewardTraining, LearnsAPreferenceOfTheAnswerText) {
  TrainSetup s;
  LocalComm comm;
  RewardTrainOptions untrained = s.options(s.root + "/untrained");
  untrained.max_steps = 1;
  untrained.lr = untrained.projector_lr = 0;  // one step with no learning: the initial model
  RewardTrainResult before = train_reward_model(comm, untrained, {});
  EXPECT_EQ(before.eval_pairs, 100);
  EXPECT_GT(before.eval_accuracy, 0.3);
  EXPECT_LT(before.eval_accuracy, 0.7);

  RewardTrainResult after = train_reward_model(comm, s.options(s.root + "/trained"), {});
  std::cout << "held-out pairwise accuracy: untrained " << before.eval_accuracy << ", trained " << after.eval_accuracy
            << " (" << after.steps << " steps, last loss " << after.last_loss << ")\n";
  EXPECT_EQ(after.steps, 4 * 20);  // 160 pairs / 8 per step, 4 epochs
  EXPECT_GE(after.eval_accuracy, 0.9) << "held-out pairwise accuracy after training";
  EXPECT_LT(after.last_loss, 0.5);

  // The output folder is a reward model: its own evaluation gives the same accuracy.
  std::int64_t n = 0;
  double acc = evaluate_reward_model(s.root + "/trained", s.root + "/eval.jsonl", "", &n);
  EXPECT_EQ(n, 100);
  EXPECT_DOUBLE_EQ(acc, after.eval_accuracy);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "score_head.safetensors",
                        "reward_config.json", "train_log.jsonl", "eval.json"})
    EXPECT_TRUE(fs::exists(s.root + "/trained/" + f)) << f;
  // PEFT names.
  Checkpoint adapter(s.root + "/trained/adapter_model.safetensors");
  EXPECT_TRUE(adapter.has("base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(adapter.has("base_model.model.language_model.model.layers.1.mlp.down_proj.lora_B.weight"));
  // merge-lora output scores like the adapter.
  auto r = test::run_command(test::align2_bin() + " merge-lora --threads 1 --base " + s.base + " --adapter " + s.root +
                             "/trained --output-dir " + s.root + "/merged");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  double merged_acc = evaluate_reward_model(s.root + "/merged", s.root + "/eval.jsonl", "", &n);
  EXPECT_DOUBLE_EQ(merged_acc, after.eval_accuracy);
}

TEST(RewardTraining, Bfloat16ModelLearnsToo) {
  TrainSetup s;
  LocalComm comm;
  RewardTrainOptions o = s.options(s.root + "/bf16");
  o.bf16 = true;
  RewardTrainResult r = train_reward_model(comm, o, {});
  std::cout << "bf16 held-out pairwise accuracy " << r.eval_accuracy << "\n";
  EXPECT_GE(r.eval_accuracy, 0.85);
  // Trained weights are saved in float32.
  Checkpoint adapter(s.root + "/bf16/adapter_model.safetensors");
  EXPECT_EQ(adapter.get("base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight").dtype, DType::f32);
}

TEST(RewardTraining, ResumeGivesTheSameWeightsAsAnUninterruptedRun) {
  TrainSetup s;
  LocalComm comm;
  RewardTrainOptions whole = s.options(s.root + "/whole");
  whole.max_steps = 6;
  whole.eval.clear();
  train_reward_model(comm, whole, {});

  RewardTrainOptions part = s.options(s.root + "/parts");
  part.eval.clear();
  part.save_every = 3;
  part.max_steps = 3;
  train_reward_model(comm, part, {});
  part.max_steps = 6;
  part.resume = true;
  RewardTrainResult r = train_reward_model(comm, part, {});
  EXPECT_EQ(r.steps, 6);
  for (const char* name : {"base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight",
                           "base_model.model.language_model.model.layers.1.mlp.up_proj.lora_B.weight"})
    EXPECT_EQ(tensor_values(s.root + "/whole/adapter_model.safetensors", name),
              tensor_values(s.root + "/parts/adapter_model.safetensors", name))
        << name;
  EXPECT_EQ(tensor_values(s.root + "/whole/score_head.safetensors", "score.weight"),
            tensor_values(s.root + "/parts/score_head.safetensors", "score.weight"));
  // Other options are refused on resume.
  part.lr *= 2;
  EXPECT_THROW(train_reward_model(comm, part, {}), std::runtime_error);
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

TEST(TrainRewardCli, TrainsAndWritesTheFolder) {
  TrainSetup s;
  std::string out = s.root + "/cli";
  auto r = test::run_command(test::align2_bin() + " train-reward --threads 1 --kind answer --base " + s.base +
                             " --data " + s.root + "/train.jsonl --eval " + s.root + "/eval.jsonl --output-dir " + out +
                             " --lora-r 4 --lora-alpha 8 --lr 5e-3 --batch-size 8 --pairs-per-step 8 --augment-rate 0"
                             " --epochs 1 --seed 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("pairwise accuracy"), std::string::npos) << r.out;
  nlohmann::json eval = nlohmann::json::parse(test::read_file(out + "/eval.json"));
  EXPECT_EQ(eval["pairs"], 100);
  EXPECT_EQ(eval["steps"], 20);
  // Scoring with the trained folder works through align2 score as well.
  test::write_file(s.root + "/pool.jsonl",
                   R"({"id": "a", "conversations": [{"from": "human", "value": "What do you see?"}, {"from": "gpt", "value": "the blue ball."}]})"
                   "\n");
  r = test::run_command(test::align2_bin() + " score --threads 1 --kind answer --model " + out + " --input " + s.root +
                        "/pool.jsonl --output " + s.root + "/scores.h5");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::run_command(test::align2_bin() + " train-reward --kind answer --base " + s.base).exit_code, 2);
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

// train-reward's defaults are the authors' recipe (docs/reward-models-reference.md §1).
TEST(TrainRewardCli, DefaultsAreTheAuthorsRecipe) {
  auto r = test::run_command(test::align2_bin() + " train-reward --help");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string h = r.out + r.err;
  for (const char* expected :
       {"LoRA rank (default 128)", "LoRA alpha (default 256)", "LoRA dropout (default 0.05)", "(default 2e-5)",
        "passes over the pairs (default 5)", "pairs per optimizer step (default 64)",
        "warm-up (default 0.03)", "corrupted-copy negative (default 0.25)"})
    EXPECT_NE(h.find(expected), std::string::npos) << expected << "\n" << h;
  // The library's defaults are the same values (the command falls back on them).
  RewardTrainOptions d;
  EXPECT_EQ(d.lora_r, 128);
  EXPECT_EQ(d.lora_alpha, 256);
  EXPECT_EQ(d.lora_dropout, 0.05);
  EXPECT_EQ(d.lr, 2e-5);
  EXPECT_EQ(d.warmup_ratio, 0.03);
  EXPECT_EQ(d.epochs, 5);
  EXPECT_EQ(d.pairs_per_step, 64);
  EXPECT_EQ(d.augment_rate, 0.25);
}

// --pairs-per-step sets the accumulation steps: 160 pairs at 16 a step (batch 8, 2 accumulation
// steps) are 10 steps; a count that the batch does not divide, or both options, are refused.
TEST(TrainRewardCli, PairsPerStepDerivesTheAccumulationSteps) {
  TrainSetup s;
  const std::string common = test::align2_bin() + " train-reward --threads 1 --kind answer --base " + s.base +
                             " --data " + s.root + "/train.jsonl --lora-r 4 --lora-alpha 8 --lr 5e-3 --batch-size 8"
                             " --augment-rate 0 --epochs 1 --seed 2 --output-dir " + s.root;
  auto r = test::run_command(common + "/pps16 --pairs-per-step 16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("10 steps"), std::string::npos) << r.out;
  r = test::run_command(common + "/pps12 --pairs-per-step 12");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("12 pairs per step is not a multiple of the batch size 8 x 1 rank(s) = 8"), std::string::npos)
      << r.err;
  r = test::run_command(common + "/both --pairs-per-step 16 --grad-accum 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exclude each other"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace align2
