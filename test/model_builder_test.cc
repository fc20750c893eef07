// align2 make-llava (core/model/model_builder.h): a LLaVA folder from the real trained tiny
// LLaMA bundled with the demo (Karpathy's stories260K) plus a seeded CLIP vision tower and
// projector. The folder loads with the product loaders, runs a forward pass, keeps the
// LLaMA exactly, and its bytes depend only on the options and the seed.
#include "core/model/model_builder.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <filesystem>

#include "core/engine/llava_model.h"
#include "core/model/model_config.h"
#include "core/model/safetensors.h"
#include "core/util/digest.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

const char* const kLlm = "examples/demo/models/stories260K";

// SHA-256 of a file's bytes, as hex.
std::string file_sha256(const std::string& path) { return sha256_hex(test::read_file(path)); }

LlavaBuildOptions options(const std::string& out, std::uint64_t seed) {
  LlavaBuildOptions o;
  o.llm_dir = test::source_path(kLlm);
  o.output_dir = out;
  o.seed = seed;
  return o;
}

const std::vector<std::string> kFiles = {"config.json", "model.safetensors", "tokenizer.model",
                                         "clip-vision/config.json", "clip-vision/preprocessor_config.json",
                                         "clip-vision/model.safetensors"};

TEST(ModelBuilder, SameSeedSameBytesOtherSeedOtherWeights) {
  const std::string root = test::scratch_dir("model_builder_bytes");
  const LlavaBuildResult a = build_llava(options(root + "/a", 7));
  build_llava(options(root + "/b", 7));
  build_llava(options(root + "/c", 8));
  EXPECT_EQ(a.image_tokens, 49);
  EXPECT_EQ(a.llm_max_positions, 512);
  EXPECT_EQ(a.llm_tensors, 47);
  for (const std::string& f : kFiles) EXPECT_EQ(file_sha256(root + "/a/" + f), file_sha256(root + "/b/" + f)) << f;
  EXPECT_NE(file_sha256(root + "/a/clip-vision/model.safetensors"), file_sha256(root + "/c/clip-vision/model.safetensors"));
  // Pinned: splitmix64 streams and float arithmetic only, so every platform writes these bytes.
  EXPECT_EQ(file_sha256(root + "/a/clip-vision/model.safetensors"),
            "340b6ec5c863b9d3aa15c0a57492fba1c7fae4471aa1f108ae3c70e6a0b71a22");
  EXPECT_EQ(file_sha256(root + "/a/model.safetensors"), "70d7b152c6342a1ed278dfa6aff122253a2b6118d92f74d84f747316315d089c");

  // The LLaMA's tensors are copied byte for byte; only the projector is new.
  Checkpoint llm(test::source_path(kLlm)), a_ckpt(root + "/a"), c_ckpt(root + "/c");
  for (const std::string& name : llm.names()) {
    const TensorView& want = llm.get(name);
    const TensorView& got = a_ckpt.get(name);
    EXPECT_EQ(got.dtype, want.dtype) << name;
    EXPECT_EQ(got.shape, want.shape) << name;
    ASSERT_EQ(got.nbytes, want.nbytes) << name;
    EXPECT_EQ(std::memcmp(got.data, want.data, want.nbytes), 0) << name;
  }
  EXPECT_EQ(a_ckpt.names().size(), llm.names().size() + 4);
  const TensorView& p0 = a_ckpt.get("model.mm_projector.0.weight", {64, 64});
  const TensorView& p0c = c_ckpt.get("model.mm_projector.0.weight", {64, 64});
  EXPECT_NE(std::memcmp(p0.data, p0c.data, p0.nbytes), 0);
  // Uniform in ±1/√64 (torch.nn.Linear's default), and not all alike.
  std::vector<float> w(static_cast<std::size_t>(p0.numel()));
  to_float32(p0, w.data());
  float lo = 1, hi = -1;
  for (float x : w) lo = std::min(lo, x), hi = std::max(hi, x);
  EXPECT_GE(lo, -0.125f);
  EXPECT_LT(hi, 0.125f);
  EXPECT_LT(lo, -0.1f);
  EXPECT_GT(hi, 0.1f);
}

TEST(ModelBuilder, LoadsAndRunsWithTheProductLoaders) {
  at::set_num_threads(1);
  const std::string dir = test::scratch_dir("model_builder_load") + "/llava";
  build_llava(options(dir, 0));
  const ModelSpec spec = load_model_spec(dir);
  EXPECT_EQ(spec.layout, ModelLayout::llava_liuhaotian);
  EXPECT_EQ(fs::canonical(spec.vision_dir), fs::canonical(dir + "/clip-vision"));
  EXPECT_EQ(spec.vision_layout, ModelLayout::clip_vision);
  EXPECT_EQ(spec.projector, ProjectorType::mlp2x_gelu);
  EXPECT_EQ(spec.image_aspect_ratio, "pad");
  EXPECT_EQ(spec.vision.image_size, 224);
  EXPECT_EQ(spec.vision.num_patches(), 49);
  EXPECT_EQ(spec.llm.hidden_size, 64);
  EXPECT_TRUE(spec.llm.tie_word_embeddings);

  LlavaModel model(spec, at::kFloat, at::Device(at::kCPU));
  at::manual_seed(3);
  const at::Tensor pixels = at::randn({2, 3, 224, 224});
  const at::Tensor vision = model.encode_images(pixels);
  EXPECT_EQ(vision.sizes(), (std::vector<std::int64_t>{2, 49, 64}));
  const at::Tensor features = model.project(vision);
  EXPECT_EQ(features.sizes(), (std::vector<std::int64_t>{2, 49, 64}));
  EXPECT_TRUE(at::isfinite(features).all().item<bool>());
  EXPECT_GT(features.std().item<double>(), 1e-3);  // the two images differ, the patches differ
  const std::int64_t img = spec.image_token_index;
  const at::Tensor last = model.last_hidden({model.splice({1, img, 345, 67}, {features[0]}),
                                             model.splice({1, img, 345, 67}, {features[1]})});
  EXPECT_EQ(last.sizes(), (std::vector<std::int64_t>{2, 64}));
  EXPECT_TRUE(at::isfinite(last).all().item<bool>());
  EXPECT_FALSE(at::equal(last[0], last[1]));  // the image reaches the LLM

  // Text alone: the LLaVA's LLM is the stories260K model, logits equal.
  const ModelSpec plain_spec = load_model_spec(test::source_path(kLlm));
  LlavaModel plain(plain_spec, at::kFloat, at::Device(at::kCPU));
  const at::Tensor a = model.llm().logits(model.last_hidden({model.splice({1, 403, 2511 % 512, 9}, {})}));
  const at::Tensor b = plain.llm().logits(plain.last_hidden({plain.splice({1, 403, 2511 % 512, 9}, {})}));
  EXPECT_TRUE(at::equal(a, b));
}

TEST(ModelBuilder, RefusesWhatCannotWork) {
  const std::string root = test::scratch_dir("model_builder_refuse");
  LlavaBuildOptions o = options(root + "/x", 0);
  o.patch_size = 8;  // 28² = 784 image tokens > 512 / 2
  EXPECT_THROW(build_llava(o), std::invalid_argument);
  o = options(root + "/x", 0);
  o.patch_size = 30;
  EXPECT_THROW(build_llava(o), std::invalid_argument);
  o = options(root + "/x", 0);
  o.vision_heads = 5;
  EXPECT_THROW(build_llava(o), std::invalid_argument);
  build_llava(options(root + "/y", 0));
  try {
    build_llava(options(root + "/y", 0));  // not empty
    ADD_FAILURE() << "a non-empty output folder was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
  }
  o = options(root + "/z", 0);
  o.llm_dir = root + "/y";  // a LLaVA, not a LLaMA
  EXPECT_THROW(build_llava(o), std::runtime_error);
}

TEST(ModelBuilder, Cli) {
  const std::string root = test::scratch_dir("model_builder_cli");
  test::CommandResult r = test::run_command(test::align2_bin() + " make-llava --llm " + test::source_path(kLlm) +
                                            " --output-dir " + root + "/cli --seed 7");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("49 image tokens of 512 positions"), std::string::npos) << r.out;
  build_llava(options(root + "/lib", 7));
  for (const std::string& f : kFiles) EXPECT_EQ(file_sha256(root + "/cli/" + f), file_sha256(root + "/lib/" + f)) << f;
  r = test::run_command(test::align2_bin() + " make-llava --llm " + test::source_path(kLlm) + " --output-dir " + root +
                        "/bad --patch-size 30");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = test::run_command(test::align2_bin() + " make-llava --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("NOT trained"), std::string::npos);
}

}  // namespace
}  // namespace align2
