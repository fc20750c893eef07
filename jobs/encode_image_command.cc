// align2 encode-image: images → the vision tower's selected hidden states and, for a
// LLaVA folder, the projected image features the LLM sees.
#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "core/model/image_preprocess.h"
#include "core/engine/llava_model.h"
#include "core/model/safetensors.h"
#include "jobs/cli.h"
#include "jobs/engine_args.h"

namespace align2::cli {


namespace {

TensorData to_tensor_data(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous().cpu();  // host memory, wherever the model ran
  std::vector<float> values(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return float_tensor(name, c.sizes().vec(), values);
}

}  // namespace

int run_encode_image(const Args& args) {
  std::string dir = args.get("model"), out = args.get("out");
  if (dir.empty()) throw UsageError("--model is required");
  if (out.empty()) throw UsageError("--out is required");
  if (args.positional.empty()) throw UsageError("give at least one IMAGE");
  parse_threads(args);
  const EngineChoice engine = parse_engine(args);
  const at::ScalarType dtype = engine.dtype;
  ModelSpec spec = load_model_spec(dir, args.get("vision-tower"));
  if (!spec.has_vision) throw std::runtime_error(fmt::format("{}: this model has no vision tower", dir));

  ImageSpec image = image_spec_for(spec);
  if (args.flag("aspect")) image.aspect = aspect_mode_from_name(args.get("aspect"));
  const std::int64_t n = std::int64_t(args.positional.size()), S = image.size;
  at::Tensor pixels = at::empty({n, 3, S, S}, at::kFloat);
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      preprocess_image_file(args.positional[std::size_t(i)], image, pixels[i].data_ptr<float>());
    } catch (const ImageError& e) {
      throw std::runtime_error(fmt::format("image {} of {}: {} [{}]", i + 1, n, e.what(), e.reason_code));
    }
  }

  // Only the vision tower and the projector are loaded: the LLM is not needed here.
  Checkpoint vision_ckpt(spec.vision_dir);
  ClipVisionTower tower(spec, vision_ckpt, dtype, engine.device);
  at::Tensor hidden = tower.forward(pixels);
  std::vector<TensorData> tensors = {to_tensor_data("vision_hidden", hidden)};
  if (spec.has_projector) {
    std::unique_ptr<Checkpoint> own;
    if (spec.vision_dir != spec.dir) own = std::make_unique<Checkpoint>(spec.dir);
    Projector projector(spec, own ? *own : vision_ckpt, dtype, engine.device);
    tensors.push_back(to_tensor_data("image_features", projector.forward(hidden)));
  }
  write_safetensors(out, tensors, {{"model", dir}, {"aspect", aspect_mode_name(image.aspect)}});
  std::cout << fmt::format("{}: vision_hidden [{}, {}, {}]{}\n", out, n, hidden.size(1), hidden.size(2),
                           spec.has_projector ? fmt::format(", image_features [{}, {}, {}]", n, hidden.size(1),
                                                            spec.llm.hidden_size)
                                              : "");
  return 0;
}

}  // namespace align2::cli
