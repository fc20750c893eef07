// Reward models on a tiny random LLaVA: score head read-out, PEFT LoRA merging (equal
// to a base whose weights already hold the update), projector override, truncation,
// and clear errors for bad folders.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/model/llava_prompt.h"
#include "core/reward/preference_pairs.h"
#include "core/engine/reward_model.h"
#include "core/model/safetensors.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<float> values(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

struct Fixture {
  std::string root, base;
  Fixture() {
    at::set_num_threads(1);
    root = test::scratch_dir("reward");
    base = root + "/base";
    test::write_tiny_model(base, test::TinyLayout::llava_liuhaotian, {},
                           test::shared_path("models/stories260K-hf/tokenizer.model"));
  }
  // A folder of images under root holding the real photo extreme_ironing.jpg as a.jpg.
  std::string image_dir(const std::string& name) const {
    std::string dir = root + "/" + name;
    fs::create_directories(dir);
    fs::copy_file(test::shared_path("data/images/extreme_ironing.jpg"), dir + "/a.jpg");
    return dir;
  }
  // A reward-model folder over the base; returns its path.
  std::string rm(const std::string& name, const json& extra = json::object(), std::int64_t max_length = 2048) {
    std::string dir = root + "/" + name;
    fs::create_directories(dir);
    json c = {{"format", "align2-reward-model"}, {"version", 1}, {"kind", "question"},
              {"base_model", "../base"}, {"max_length", max_length}};
    for (auto& [k, v] : extra.items()) c[k] = v;
    test::write_file(dir + "/reward_config.json", c.dump(2));
    at::manual_seed(11);
    write_safetensors(dir + "/score_head.safetensors", {float_tensor("score.weight", {1, 32}, values(at::randn({1, 32})))});
    return dir;
  }
};

// The score by hand: the folder's score head dotted with a hidden state [32], in double.
double head_dot(const std::string& rm_dir, const at::Tensor& hidden) {
  Checkpoint head(rm_dir + "/score_head.safetensors");
  std::vector<float> w(32);
  to_float32(head.get("score.weight"), w.data());
  double dot = 0;
  for (int i = 0; i < 32; ++i) dot += double(hidden[i].item<float>()) * w[std::size_t(i)];
  return dot;
}

TEST(RewardModel, ScoreIsTheHeadOnTheLastHiddenState) {
  Fixture f;
  RewardModel rm(f.rm("rm"), at::kFloat, at::Device(at::kCPU));
  at::manual_seed(2);
  at::Tensor pixels = at::randn({3, 28, 28});
  at::Tensor features = rm.image_features(pixels);
  EXPECT_EQ(features.sizes(), (std::vector<std::int64_t>{4, 32}));
  std::string text = question_rm_text({"What is in the picture?", "Why is it there?"});
  RewardScore s = rm.score(text, features);
  EXPECT_FALSE(s.truncated);
  // By hand: tokens with one placeholder, spliced, last position, dot with the head.
  const LlavaModel& m = rm.llava();
  std::vector<std::int64_t> ids = tokenize_with_images(rm.tokenizer(), text, -200);
  at::Tensor seq = m.splice(ids, {features});
  EXPECT_EQ(seq.size(0), std::int64_t(ids.size()) - 1 + 4);
  EXPECT_NEAR(s.score, head_dot(f.root + "/rm", m.last_hidden({seq})[0]), 1e-5);
  // Scoring other texts in between does not change a score.
  rm.score(answer_rm_text("Q?", "A long answer about the picture."), features);
  EXPECT_EQ(rm.score(text, features).score, s.score);
  // Another text scores differently.
  EXPECT_NE(rm.score(question_rm_text({"How many?"}), features).score, s.score);
}

TEST(RewardModel, TruncatesAtMaxLengthAndSaysSo) {
  Fixture f;
  RewardModel full(f.rm("full"), at::kFloat, at::Device(at::kCPU));
  RewardModel cut(f.rm("cut", json::object(), 8), at::kFloat, at::Device(at::kCPU));
  at::Tensor features = full.image_features(at::zeros({3, 28, 28}));
  std::string text = answer_rm_text("What happens next in the story about the little girl?", "She plays with a ball.");
  RewardScore a = full.score(text, features), b = cut.score(text, features);
  EXPECT_FALSE(a.truncated);
  EXPECT_TRUE(b.truncated);
  // The cut score is the score of the first 8 positions (BOS, image's 4, 3 text tokens).
  std::vector<std::int64_t> ids = tokenize_with_images(full.tokenizer(), text, -200);
  at::Tensor seq = full.llava().splice(ids, {features}).narrow(0, 0, 8);
  EXPECT_NEAR(b.score, head_dot(f.root + "/cut", full.llava().last_hidden({seq})[0]), 1e-5);
}

TEST(RewardModel, PeftLoraAdapterEqualsMergedWeights) {
  Fixture f;
  std::string dir = f.rm("lora");
  // A PEFT adapter (r = 4, alpha = 8) on q_proj and down_proj of every layer.
  const std::int64_t r = 4;
  const double scale = 8.0 / 4.0;
  test::write_file(dir + "/adapter_config.json",
                   json{{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", 8}, {"lora_dropout", 0.05}, {"bias", "none"},
                        {"target_modules", {"q_proj", "down_proj"}}, {"task_type", "CAUSAL_LM"}}
                       .dump());
  at::manual_seed(5);
  std::vector<TensorData> lora;
  std::map<std::string, at::Tensor> deltas;  // base tensor name → scale * B @ A
  for (int l = 0; l < 2; ++l) {
    for (auto [module, out, in] : {std::tuple<const char*, std::int64_t, std::int64_t>{"self_attn.q_proj", 32, 32},
                                   {"mlp.down_proj", 32, 64}}) {
      std::string name = fmt::format("model.layers.{}.{}", l, module);
      at::Tensor A = at::randn({r, in}) * 0.1, B = at::randn({out, r}) * 0.1;
      lora.push_back(float_tensor("base_model.model." + name + ".lora_A.weight", {r, in}, values(A)));
      lora.push_back(float_tensor("base_model.model." + name + ".lora_B.weight", {out, r}, values(B)));
      deltas[name + ".weight"] = scale * at::matmul(B, A);
    }
  }
  write_safetensors(dir + "/adapter_model.safetensors", lora);

  // The same update written into a copy of the base checkpoint.
  std::string merged = f.root + "/merged-base";
  fs::create_directories(merged);
  for (const char* file : {"config.json", "tokenizer.model"}) fs::copy_file(f.base + "/" + file, merged + "/" + file);
  Checkpoint base(f.base + "/model.safetensors");
  std::vector<TensorData> tensors;
  for (const std::string& name : base.names()) {
    const TensorView& v = base.get(name);
    std::vector<float> x(static_cast<std::size_t>(v.numel()));
    to_float32(v, x.data());
    at::Tensor t = at::from_blob(x.data(), v.shape, at::kFloat).clone();
    if (deltas.count(name)) t = t + deltas[name];
    tensors.push_back(float_tensor(name, v.shape, values(t)));
  }
  write_safetensors(merged + "/model.safetensors", tensors);
  std::string plain = f.rm("plain-on-merged", {{"base_model", "../merged-base"}, {"vision_tower", "../base-clip"}});

  RewardModel with_adapter(dir, at::kFloat, at::Device(at::kCPU));
  RewardModel on_merged(plain, at::kFloat, at::Device(at::kCPU));
  RewardModel without(f.rm("none"), at::kFloat, at::Device(at::kCPU));
  at::Tensor features = with_adapter.image_features(at::ones({3, 28, 28}) * 0.3);
  std::string text = question_rm_text({"Is the girl happy?"});
  float s_adapter = with_adapter.score(text, features).score;
  EXPECT_NEAR(s_adapter, on_merged.score(text, on_merged.image_features(at::ones({3, 28, 28}) * 0.3)).score, 1e-5);
  EXPECT_GT(std::abs(s_adapter - without.score(text, features).score), 1e-4);  // the adapter did something

  // align2 merge-lora writes a folder whose scores equal the adapter's (float32 base: exactly).
  std::string out = f.root + "/merged-rm";
  auto merge = test::run_command(test::align2_bin() + " merge-lora --threads 1 --base " + f.base + " --adapter " + dir +
                             " --output-dir " + out);
  ASSERT_EQ(merge.exit_code, 0) << merge.err;
  RewardModel merged_rm(out, at::kFloat, at::Device(at::kCPU));
  EXPECT_FALSE(fs::exists(out + "/adapter_config.json"));
  EXPECT_EQ(merged_rm.score(text, merged_rm.image_features(at::ones({3, 28, 28}) * 0.3)).score, s_adapter);
  // A second merge into the same, now full, folder is refused.
  EXPECT_EQ(test::run_command(test::align2_bin() + " merge-lora --threads 1 --base " + f.base + " --adapter " + dir +
                              " --output-dir " + out).exit_code, 1);

  // The authors' SEQ_CLS adapters carry the head as base_model.model.score.weight.
  Checkpoint head(dir + "/score_head.safetensors");
  std::vector<float> w(32);
  to_float32(head.get("score.weight"), w.data());
  lora.push_back(float_tensor("base_model.model.score.weight", {1, 32}, w));
  write_safetensors(dir + "/adapter_model.safetensors", lora);
  fs::remove(dir + "/score_head.safetensors");
  RewardModel head_in_adapter(dir, at::kFloat, at::Device(at::kCPU));
  EXPECT_EQ(head_in_adapter.score(text, features).score, s_adapter);
}

TEST(RewardModel, BadFoldersAreRefusedClearly) {
  Fixture f;
  std::string dir = f.rm("bad");
  auto expect_error = [&](const std::string& fragment) {
    try {
      RewardModel rm(dir, at::kFloat, at::Device(at::kCPU));
      ADD_FAILURE() << "expected an error containing: " << fragment;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  test::write_file(dir + "/reward_config.json", json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", "questions"},
                                                      {"base_model", "../base"}}.dump());
  expect_error("key \"kind\"");
  test::write_file(dir + "/reward_config.json", json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", "answer"},
                                                      {"base_model", "../base"}, {"lr", 1}}.dump());
  expect_error("key \"lr\": unknown key");
  test::write_file(dir + "/reward_config.json", json{{"format", "align2-reward-model"}, {"version", 1}, {"kind", "answer"},
                                                      {"base_model", "../base"}}.dump());
  fs::remove(dir + "/score_head.safetensors");
  expect_error("score_head.safetensors");
  write_safetensors(dir + "/score_head.safetensors", {float_tensor("score.weight", {1, 16}, std::vector<float>(16))});
  expect_error("expected [1, 32]");
  write_safetensors(dir + "/score_head.safetensors", {float_tensor("score.weight", {1, 32}, std::vector<float>(32))});
  test::write_file(dir + "/adapter_config.json", json{{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}}.dump());
  write_safetensors(dir + "/adapter_model.safetensors",
                    {float_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {2, 32}, std::vector<float>(64)),
                     float_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", {32, 2}, std::vector<float>(64)),
                     float_tensor("base_model.model.lm_head.weight", {512, 32}, std::vector<float>(512 * 32))});
  expect_error("base_model.model.lm_head.weight is not a LoRA factor");
}

}  // namespace
}  // namespace align2

#include "core/model/image_preprocess.h"
#include "core/engine/reward_scorer.h"
#include "distributed/nccl_comm.h"
#include "core/engine/reward_scoring.h"
#include "core/store/shard_store.h"

namespace align2 {
namespace {

TEST(ScoreCli, ScoresEveryRecordAndKeepsEveryStatus) {
  Fixture f;
  std::string qrm = f.rm("qrm"), arm = f.rm("arm", {{"kind", "answer"}});
  std::string images = f.image_dir("images");
  fs::copy_file(test::shared_path("data/images/CLIP.png"), images + "/b.png");
  test::write_file(images + "/broken.jpg", "\xFF\xD8\xFF not really");
  auto rec = [](const std::string& id, const std::string& image, const std::string& turns) {
    return "{\"id\": \"" + id + "\"" + (image.empty() ? "" : ", \"image\": \"" + image + "\"") +
           ", \"conversations\": [" + turns + "]}\n";
  };
  std::string two = R"({"from": "human", "value": "<image>\nWhat is he doing?"}, {"from": "gpt", "value": "Ironing."}, {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "On a taxi."})";
  std::string one = R"({"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A diagram."})";
  std::string text = R"({"from": "human", "value": "Tell a story."}, {"from": "gpt", "value": "Once upon a time."})";
  test::write_file(f.root + "/pool.jsonl", rec("r0", "a.jpg", two) + rec("r1", "b.png", one) + rec("r2", "", text) +
                                               rec("r3", "broken.jpg", one) + rec("r4", "absent.jpg", one) + "{oops\n");
  for (auto [kind, dir] : {std::pair<std::string, std::string>{"question", qrm}, {"answer", arm}}) {
    std::string out = f.root + "/" + kind + ".h5";
    auto r = test::run_command(test::align2_bin() + " score --threads 1 --kind " + kind + " --model " + dir + " --input " +
                               f.root + "/pool.jsonl --image-root " + images + " --output " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ShardData d = read_shard(out);
    ASSERT_EQ(d.rows.size(), 6u);
    std::vector<std::string> status, reason;
    for (const ShardRow& row : d.rows) {
      status.push_back(status_name(row.status));
      reason.push_back(reason_name(row.reason));
    }
    EXPECT_EQ(status, (std::vector<std::string>{"valid", "valid", "valid", "invalid", "missing_image", "invalid"}));
    EXPECT_EQ(reason, (std::vector<std::string>{"", "", "", "bad_image", "missing_image", "not_json"}));
    EXPECT_NE(d.rows[3].message.find("broken.jpg"), std::string::npos) << d.rows[3].message;
    EXPECT_EQ(d.rows[0].truncated, 0);
    EXPECT_EQ(d.rows[3].truncated, -1);
    if (kind == "question") {
      for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isfinite(d.rows[std::size_t(i)].question_score));
      EXPECT_TRUE(std::isnan(d.rows[3].question_score));
      // Record 0 by hand: its image padded and encoded, its two questions joined.
      RewardModel rm(qrm, at::kFloat, at::Device(at::kCPU));
      ImageSpec is;
      is.size = 28;
      at::Tensor pixels = at::empty({3, 28, 28});
      preprocess_image_file(images + "/a.jpg", is, pixels.data_ptr<float>());
      float expect = rm.score(question_rm_text({"<image>\nWhat is he doing?", "Where?"}), rm.image_features(pixels)).score;
      EXPECT_NEAR(d.rows[0].question_score, expect, 1e-5);
      // A text-only record's text carries no image tag.
      EXPECT_NEAR(d.rows[2].question_score, rm.score("Tell a story.", at::Tensor()).score, 1e-5);
    } else {
      EXPECT_EQ(d.rows[0].answer_scores.size(), 2u);
      EXPECT_EQ(d.rows[1].answer_scores.size(), 1u);
      EXPECT_NEAR(d.rows[0].answer_score, (d.rows[0].answer_scores[0] + d.rows[0].answer_scores[1]) / 2.0, 1e-6);
      EXPECT_TRUE(d.rows[3].answer_scores.empty());
    }
  }
  // The kind must match the folder.
  auto r = test::run_command(test::align2_bin() + " score --threads 1 --kind answer --model " + qrm + " --input " +
                             f.root + "/pool.jsonl --output " + f.root + "/x.h5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is a question reward model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

// The authors' ranking scripts preprocessed `square` (resize, centre crop) although their
// models trained with `pad`: --image-aspect square reproduces that, and changes the score of a
// non-square image to exactly the one its square-cropped pixels give.
TEST(ScoreCli, ImageAspectSquareChangesThePreprocessing) {
  Fixture f;
  std::string qrm = f.rm("qrm-aspect");
  std::string images = f.image_dir("images-aspect");
  test::write_file(f.root + "/aspect.jsonl",
                   R"({"id": "r0", "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is he doing?"}, {"from": "gpt", "value": "Ironing."}]})"
                   "\n");
  auto score = [&](const std::string& flag) {
    std::string out = f.root + "/aspect" + flag.substr(flag.find_last_of(' ') + 1) + ".h5";
    auto r = test::run_command(test::align2_bin() + " score --threads 1 --kind question --model " + qrm + " --input " +
                               f.root + "/aspect.jsonl --image-root " + images + " --output " + out + flag);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return read_shard(out).rows.at(0).question_score;
  };
  const double by_default = score(""), pad = score(" --image-aspect pad"), square = score(" --image-aspect square");
  RewardModel rm(qrm, at::kFloat, at::Device(at::kCPU));
  auto by_hand = [&](AspectMode aspect) {
    ImageSpec is;
    is.size = 28;
    is.aspect = aspect;
    at::Tensor pixels = at::empty({3, 28, 28});
    preprocess_image_file(images + "/a.jpg", is, pixels.data_ptr<float>());
    return rm.score(question_rm_text({"<image>\nWhat is he doing?"}), rm.image_features(pixels)).score;
  };
  EXPECT_EQ(by_default, pad);  // the liuhaotian base's image_aspect_ratio is pad
  EXPECT_NEAR(pad, by_hand(AspectMode::pad), 1e-5);
  EXPECT_NEAR(square, by_hand(AspectMode::square), 1e-5);
  EXPECT_GT(std::abs(square - pad), 1e-4) << "square and pad gave the same score";
  auto r = test::run_command(test::align2_bin() + " score --kind question --model " + qrm + " --input " + f.root +
                             "/aspect.jsonl --output " + f.root + "/x.h5 --image-aspect wide");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--image-aspect wide"), std::string::npos) << r.err;
}

// The cascade's Scorer holds one reward model at a time: none after construction (it reads
// the folders' configs only), the question model while stage 1 scores, the answer model while
// stage 2 scores (the question model freed first), none after release(); the scores are the
// models' own either way.
TEST(RewardScorer, HoldsOneStagesModelAtATime) {
  Fixture f;
  std::string qrm = f.rm("qrm-stages"), arm = f.rm("arm-stages", {{"kind", "answer"}});
  std::string images = f.image_dir("images-stages");
  Sample s;
  s.image = "a.jpg";
  s.turns = {{"<image>\nWhat is he doing?", "Ironing."}, {"Where?", "On a taxi."}};
  RewardScorer scorer(qrm, arm, images, at::kFloat);
  EXPECT_FALSE(scorer.holds_question_model());
  EXPECT_FALSE(scorer.holds_answer_model());
  float q = 0;
  std::vector<ScoreFailure> failures;
  scorer.score_questions({&s}, &q, &failures);
  EXPECT_TRUE(scorer.holds_question_model());
  EXPECT_FALSE(scorer.holds_answer_model());
  std::vector<std::vector<float>> a;
  scorer.score_answers({&s}, &a, &failures);
  EXPECT_FALSE(scorer.holds_question_model());
  EXPECT_TRUE(scorer.holds_answer_model());
  scorer.release();
  EXPECT_FALSE(scorer.holds_question_model());
  EXPECT_FALSE(scorer.holds_answer_model());
  ASSERT_TRUE(failures.empty());
  RewardModel question(qrm, at::kFloat, at::Device(at::kCPU)), answer(arm, at::kFloat, at::Device(at::kCPU));
  const ImageSpec image = reward_image_spec(question.llava().spec(), "");
  EXPECT_EQ(q, question.score(reward_text(RewardKind::question, s, 0), sample_features(question, s, images, image)).score);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].size(), 2u);
  EXPECT_EQ(a[0][1], answer.score(reward_text(RewardKind::answer, s, 1), sample_features(answer, s, images, image)).score);
  float again = 0;
  scorer.score_questions({&s}, &again, &failures);  // loaded again after release: the same score
  EXPECT_EQ(again, q);
}

// Batched scoring: several sequences of different lengths (with and without an image) in one
// padded, masked forward give each sequence's one-per-forward score. fp32 tolerance 1e-5: the
// padded matrix shapes may sum in another order, nothing more (bf16 rounds each layer to 8 bits
// and is not compared here).
TEST(RewardModel, BatchedScoresEqualOneSequencePerForward) {
  Fixture f;
  RewardModel rm(f.rm("batch"), at::kFloat, at::Device(at::kCPU));
  at::manual_seed(5);
  at::Tensor a = rm.image_features(at::randn({3, 28, 28})), b = rm.image_features(at::randn({3, 28, 28}));
  const std::vector<RewardInput> inputs = {
      {question_rm_text({"<image>\nWhat is in the picture?"}), a},
      {answer_rm_text("<image>\nWhy?", "Because the story says so, and the girl agrees with it."), b},
      {reward_input(question_rm_text({"A text-only question, longer than the others by a good many tokens, isn't it?"}),
                    false),
       {}},
      {question_rm_text({"<image>\nHow many?"}), a},
  };
  const std::vector<RewardScore> batched = rm.score_batch(inputs);
  ASSERT_EQ(batched.size(), inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const RewardScore alone = rm.score(inputs[i].text, inputs[i].features);
    EXPECT_NEAR(batched[i].score, alone.score, 1e-5) << "sequence " << i;
    EXPECT_EQ(batched[i].truncated, alone.truncated);
  }
  EXPECT_NE(batched[0].score, batched[3].score);
  EXPECT_TRUE(rm.score_batch({}).empty());
}

// The cascade's scorer with batch 3: the same scores as batch 1 within the tolerance above, for
// both stages, and a sample whose image cannot be used still fails alone.
TEST(RewardScorer, BatchedScorerMatchesOnePerForward) {
  Fixture f;
  std::string qrm = f.rm("qrm-batch"), arm = f.rm("arm-batch", {{"kind", "answer"}});
  std::string images = f.image_dir("images-batch");
  test::write_file(images + "/broken.jpg", "not a JPEG");
  std::vector<Sample> samples(5);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    samples[i].index = i;
    samples[i].image = i == 2 ? "broken.jpg" : i == 4 ? "" : "a.jpg";
    const std::string tag = samples[i].image.empty() ? "" : "<image>\n";
    samples[i].turns = {{tag + "What is he doing" + std::string(i, '?'), "Ironing."}};
    if (i % 2) samples[i].turns.push_back({"Where is he?", "On a taxi, in the street, in the city."});
  }
  std::vector<const Sample*> all;
  for (const Sample& s : samples) all.push_back(&s);
  RewardScorer one(qrm, arm, images, at::kFloat), three(qrm, arm, images, at::kFloat, "", at::Device(at::kCPU), 3);
  EXPECT_EQ(one.group_size(), 1u);
  EXPECT_EQ(three.group_size(), 3u);
  EXPECT_NE(one.stage_fingerprint("select_questions"), three.stage_fingerprint("select_questions"));
  std::vector<float> q1(5), q3(5);
  std::vector<ScoreFailure> f1, f3;
  one.score_questions(all, q1.data(), &f1);
  three.score_questions(all, q3.data(), &f3);
  ASSERT_EQ(f3.size(), 1u);
  EXPECT_EQ(f3[0].sample, 2u);
  for (std::size_t i : {0, 1, 3, 4}) EXPECT_NEAR(q3[i], q1[i], 1e-5) << "sample " << i;
  std::vector<std::vector<float>> a1, a3;
  one.score_answers(all, &a1, &f1);
  three.score_answers(all, &a3, &f3);
  for (std::size_t i : {0, 1, 3, 4}) {
    ASSERT_EQ(a3[i].size(), samples[i].turns.size());
    for (std::size_t t = 0; t < a3[i].size(); ++t) EXPECT_NEAR(a3[i][t], a1[i][t], 1e-5) << i << "/" << t;
  }
  EXPECT_TRUE(a3[2].empty());
}

// --device on the model commands: cpu runs; cuda without a GPU (or with a libtorch without
// CUDA) is refused with the reason; an unknown name is a usage error.
TEST(ScoreCli, DeviceFlagChoosesWhereTheModelRuns) {
  Fixture f;
  const std::string qrm = f.rm("qrm-device");
  test::write_file(f.root + "/device.jsonl",
                   R"({"id": "r0", "conversations": [{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": "A cat."}]})"
                   "\n");
  const std::string command = test::align2_bin() + " score --threads 1 --kind question --model " + qrm + " --input " +
                              f.root + "/device.jsonl --output " + f.root + "/device.h5";
  auto cpu = test::run_command(command + " --device cpu");
  EXPECT_EQ(cpu.exit_code, 0) << cpu.err;
  auto cuda = test::run_command(command + " --device cuda");
  if (cuda_device_count() == 0) {
    EXPECT_EQ(cuda.exit_code, 1);
    EXPECT_NE(cuda.err.find("device cuda: "), std::string::npos) << cuda.err;
  }
  auto bad = test::run_command(command + " --device gpu");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--device \"gpu\""), std::string::npos) << bad.err;
}

TEST(RewardModel, ProjectorFromEitherFileName) {
  Fixture f;
  std::string a = f.rm("proj-a"), b = f.rm("proj-b"), none = f.rm("proj-none");
  at::manual_seed(8);
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> names = {
      {"model.mm_projector.0.weight", {32, 24}}, {"model.mm_projector.0.bias", {32}},
      {"model.mm_projector.2.weight", {32, 32}}, {"model.mm_projector.2.bias", {32}}};
  std::vector<TensorData> plain, authors;
  for (auto& [name, shape] : names) {
    std::vector<float> v = values(at::randn(shape) * 0.1);
    plain.push_back(float_tensor(name, shape, v));
    authors.push_back(float_tensor("base_model.model." + name, shape, v));
  }
  write_safetensors(a + "/projector.safetensors", plain);
  write_safetensors(b + "/non_lora_trainables.safetensors", authors);
  RewardModel ra(a, at::kFloat, at::Device(at::kCPU)), rb(b, at::kFloat, at::Device(at::kCPU)),
      rn(none, at::kFloat, at::Device(at::kCPU));
  at::Tensor pixels = at::ones({3, 28, 28}) * 0.2;
  EXPECT_TRUE(at::equal(ra.image_features(pixels), rb.image_features(pixels)));
  EXPECT_FALSE(at::equal(ra.image_features(pixels), rn.image_features(pixels)));
  // merge-lora carries the authors' projector into the merged folder too.
  auto r = test::run_command(test::align2_bin() + " merge-lora --threads 1 --base " + f.base + " --adapter " + b +
                             " --output-dir " + f.root + "/proj-merged");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RewardModel merged(f.root + "/proj-merged", at::kFloat, at::Device(at::kCPU));
  EXPECT_TRUE(at::equal(merged.image_features(pixels), rb.image_features(pixels)));
}

}  // namespace
}  // namespace align2
