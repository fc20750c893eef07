// align2 make-llava: a LLaVA folder from a trained LLaMA plus a freshly initialised CLIP
// vision tower and mlp2x_gelu projector (core/model/model_builder.h).
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "core/model/model_builder.h"
#include "jobs/cli.h"

namespace align2::cli {

int run_make_llava(const Args& args) {
  LlavaBuildOptions o;
  o.llm_dir = args.get("llm");
  o.output_dir = args.get("output-dir");
  if (o.llm_dir.empty() || o.output_dir.empty()) throw UsageError("--llm and --output-dir are required");
  if (!args.positional.empty()) throw UsageError(fmt::format("unexpected argument '{}'", args.positional[0]));
  o.vision_layers = int_option(args, "vision-layers", o.vision_layers, 1, 1 << 10);
  o.vision_hidden = int_option(args, "vision-hidden", o.vision_hidden, 1, 1 << 16);
  o.vision_intermediate = int_option(args, "vision-intermediate", 0, 0, 1 << 18);
  o.vision_heads = int_option(args, "vision-heads", o.vision_heads, 1, 1 << 10);
  o.image_size = int_option(args, "image-size", o.image_size, 1, 1 << 14);
  o.patch_size = int_option(args, "patch-size", o.patch_size, 1, 1 << 14);
  o.max_positions = int_option(args, "max-positions", 0, 1, 1 << 24);
  const std::string seed = args.get("seed", "0");
  char* end = nullptr;
  errno = 0;
  o.seed = std::strtoull(seed.c_str(), &end, 10);
  if (seed.empty() || seed[0] == '-' || *end != '\0' || errno != 0)
    throw UsageError(fmt::format("--seed {}: expected an unsigned 64-bit integer", seed));
  LlavaBuildResult r;
  try {
    r = build_llava(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::cout << fmt::format(
      "{}: LLaVA (liuhaotian layout) from {}: {} LLaMA tensors copied, vision tower {} ({} layers, hidden {}, "
      "{}px, {} image tokens of {} positions) and projector freshly initialised ({} parameters, seed {}, untrained)\n",
      r.llava_dir, o.llm_dir, r.llm_tensors, r.vision_dir, o.vision_layers, o.vision_hidden, o.image_size,
      r.image_tokens, r.llm_max_positions, r.new_parameters, o.seed);
  return 0;
}

}  // namespace align2::cli
