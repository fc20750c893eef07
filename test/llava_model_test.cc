// A tiny random LLaVA written in every checkpoint layout (liuhaotian + separate CLIP
// folder, llava-hf transformers 4.x names, 5.x names) loads and gives identical outputs.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/engine/llava_model.h"
#include "core/model/model_config.h"
#include "test/model_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

struct Outputs {
  at::Tensor vision, features, last;
};

Outputs run(const std::string& dir) {
  ModelSpec spec = load_model_spec(dir);
  LlavaModel model(spec, at::kFloat, at::Device(at::kCPU));
  at::manual_seed(7);
  at::Tensor pixels = at::randn({2, 3, 28, 28});
  Outputs o;
  o.vision = model.encode_images(pixels);
  o.features = model.project(o.vision);
  std::int64_t img = spec.image_token_index;
  std::vector<at::Tensor> seqs = {model.splice({1, 5, img, 7, 8}, {o.features[0]}),
                                  model.splice({1, img, 9}, {o.features[1]}), model.splice({1, 3, 4}, {})};
  o.last = model.last_hidden(seqs);
  return o;
}

TEST(LlavaModel, EveryLayoutGivesTheSameOutputs) {
  at::set_num_threads(1);  // tiny model; ctest runs tests side by side
  std::string root = test::scratch_dir("llava-layouts");
  test::TinyModelOptions opt;
  std::vector<std::pair<test::TinyLayout, std::string>> layouts = {{test::TinyLayout::llava_liuhaotian, "liuhaotian"},
                                                                   {test::TinyLayout::llava_hf4, "hf4"},
                                                                   {test::TinyLayout::llava_hf5, "hf5"}};
  std::vector<Outputs> outs;
  for (auto& [layout, name] : layouts) {
    test::write_tiny_model(root + "/" + name, layout, opt);
    outs.push_back(run(root + "/" + name));
  }
  // Shapes: 4 patches (28 / 14 squared), CLS dropped; vision hidden 24 → LLM hidden 32.
  EXPECT_EQ(outs[0].vision.sizes(), (std::vector<std::int64_t>{2, 4, 24}));
  EXPECT_EQ(outs[0].features.sizes(), (std::vector<std::int64_t>{2, 4, 32}));
  EXPECT_EQ(outs[0].last.sizes(), (std::vector<std::int64_t>{3, 32}));
  for (std::size_t i = 1; i < outs.size(); ++i) {
    EXPECT_TRUE(at::equal(outs[0].vision, outs[i].vision)) << layouts[i].second;
    EXPECT_TRUE(at::equal(outs[0].features, outs[i].features)) << layouts[i].second;
    EXPECT_LE((outs[0].last - outs[i].last).abs().max().item<double>(), 1e-6) << layouts[i].second;
  }
}

TEST(LlavaModel, SpliceChecksPlaceholderCounts) {
  at::set_num_threads(1);  // tiny model; ctest runs tests side by side
  std::string dir = test::scratch_dir("llava-splice") + "/m";
  test::write_tiny_model(dir, test::TinyLayout::llava_hf4, {});
  ModelSpec spec = load_model_spec(dir);
  LlavaModel model(spec, at::kFloat, at::Device(at::kCPU));
  at::Tensor f = at::zeros({4, 32});
  std::int64_t img = spec.image_token_index;
  EXPECT_THROW(model.splice({1, img}, {}), std::invalid_argument);
  EXPECT_THROW(model.splice({1, 2}, {f}), std::invalid_argument);
  EXPECT_THROW(model.splice({1, 100000}, {}), std::invalid_argument);
  at::Tensor s = model.splice({1, img, 2}, {f});
  EXPECT_EQ(s.size(0), 6);
  EXPECT_TRUE(at::equal(s.narrow(0, 1, 4), f));
}

}  // namespace
}  // namespace align2

namespace align2 {
namespace {

TEST(LlavaModel, VisionTowerAndProjectorMatchAnIndependentNumpyForward) {
  at::set_num_threads(1);
  std::string root = test::scratch_dir("llava-numpy");
  std::string dir = root + "/m";
  test::write_tiny_model(dir, test::TinyLayout::llava_liuhaotian, {});
  ModelSpec spec = load_model_spec(dir);
  LlavaModel model(spec, at::kFloat, at::Device(at::kCPU));
  at::manual_seed(3);
  at::Tensor pixels = at::randn({2, 3, 28, 28}).contiguous();
  at::Tensor vision = model.encode_images(pixels);
  at::Tensor feats = model.project(vision);
  std::string pix = root + "/pixels.f32", out = root + "/out.f32";
  test::write_file(pix, std::string(reinterpret_cast<const char*>(pixels.data_ptr<float>()), pixels.numel() * 4));
  std::string cmd = "/usr/bin/python3 " + test::source_path("test/reference/clip_numpy.py") + " " + dir +
                    "-clip/model.safetensors vision_model. " + dir + "-clip/config.json " + pix + " 2 -2 " + out +
                    " " + dir + "/model.safetensors model.mm_projector.0.weight model.mm_projector.0.bias "
                    "model.mm_projector.2.weight model.mm_projector.2.bias";
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string raw = test::read_file(out);
  ASSERT_EQ(raw.size(), std::size_t(vision.numel() + feats.numel()) * 4);
  at::Tensor ref = at::from_blob(raw.data(), {vision.numel() + feats.numel()}, at::kFloat).clone();
  at::Tensor ref_vision = ref.narrow(0, 0, vision.numel()).view(vision.sizes());
  at::Tensor ref_feats = ref.narrow(0, vision.numel(), feats.numel()).view(feats.sizes());
  EXPECT_LE((vision - ref_vision).abs().max().item<double>(), 1e-5);
  EXPECT_LE((feats - ref_feats).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace align2

#include "core/model/image_preprocess.h"

namespace align2 {
namespace {

TEST(EncodeImageCli, WritesVisionHiddenAndImageFeatures) {
  at::set_num_threads(1);
  std::string root = test::scratch_dir("encode-image");
  std::string dir = root + "/m";
  test::write_tiny_model(dir, test::TinyLayout::llava_liuhaotian, {});
  std::vector<std::string> images = {test::shared_path("data/images/extreme_ironing.jpg"),
                                     test::shared_path("data/images/CLIP.png")};
  std::string out = root + "/feats.safetensors";
  auto r = test::run_command(test::align2_bin() + " encode-image --threads 1 --model " + dir + " --out " + out + " " +
                             images[0] + " " + images[1]);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint written(out);
  const TensorView& vh = written.get("vision_hidden", {2, 4, 24});
  const TensorView& feats = written.get("image_features", {2, 4, 32});
  // In-process: the same preprocessing (pad, 28 px) and model.
  ModelSpec spec = load_model_spec(dir);
  LlavaModel model(spec, at::kFloat, at::Device(at::kCPU));
  ImageSpec is;
  is.size = 28;
  at::Tensor pixels = at::empty({2, 3, 28, 28});
  for (int i = 0; i < 2; ++i) preprocess_image_file(images[std::size_t(i)], is, pixels[i].data_ptr<float>());
  at::Tensor expect_vh = model.encode_images(pixels), expect_f = model.project(expect_vh);
  std::vector<float> got(std::size_t(vh.numel()));
  to_float32(vh, got.data());
  EXPECT_TRUE(at::equal(at::from_blob(got.data(), {2, 4, 24}), expect_vh));
  std::vector<float> gotf(std::size_t(feats.numel()));
  to_float32(feats, gotf.data());
  EXPECT_TRUE(at::equal(at::from_blob(gotf.data(), {2, 4, 32}), expect_f));

  // A bare CLIPVisionModel folder gives vision_hidden only.
  r = test::run_command(test::align2_bin() + " encode-image --threads 1 --model " + dir + "-clip --out " + out + " " +
                        images[0]);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint clip_only(out);
  EXPECT_TRUE(clip_only.has("vision_hidden"));
  EXPECT_FALSE(clip_only.has("image_features"));
  // A bad image names itself.
  test::write_file(root + "/bad.jpg", "not an image");
  r = test::run_command(test::align2_bin() + " encode-image --threads 1 --model " + dir + " --out " + out + " " + root +
                        "/bad.jpg");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.jpg"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace align2
