// align2 generate: text continuation by a LLaMA (or the LLM of a LLaVA folder).
#include <fmt/format.h>

#include <iostream>

#include "core/model/memory_estimate.h"
#include "core/engine/generation.h"
#include "core/engine/llava_model.h"
#include "core/model/safetensors.h"
#include "core/model/tokenizer.h"
#include "jobs/cli.h"
#include "jobs/engine_args.h"

namespace align2::cli {

int run_generate(const Args& args) {
  std::string dir = args.get("model");
  if (dir.empty()) throw UsageError("--model is required");
  if (!args.flag("prompt")) throw UsageError("--prompt is required");
  std::string prompt = args.get("prompt");
  if (prompt.find("<image>") != std::string::npos)
    throw UsageError("the prompt holds <image>: align2 generate is text-only");
  parse_threads(args);
  const EngineChoice engine = parse_engine(args);

  ModelSpec spec = load_model_spec(dir);
  Tokenizer tokenizer = Tokenizer::load(dir + "/tokenizer.model");
  spec.has_vision = spec.has_projector = false;  // text only: leave the vision tower unloaded
  require_memory(estimate_model_memory(spec, std::size_t(at::elementSize(engine.dtype)), spec.llm.max_positions, 1, true),
                 memory_budget(engine.device), "the model " + dir);
  LlavaModel model(spec, engine.dtype, engine.device);

  GenerationOptions o;
  o.max_new_tokens = int_option(args, "max-new-tokens", 128, 1, spec.llm.max_positions);
  o.temperature = real_option(args, "temperature", 0.0, 0.0, 1e6);
  o.top_p = real_option(args, "top-p", 1.0, 1e-9, 1.0);
  o.eos_token_id = spec.llm.eos_token_id;
  o.keep_logits = args.flag("logits-out");
  std::uint64_t seed = std::uint64_t(int_option(args, "seed", 0, 0, INT64_MAX));

  std::vector<std::int32_t> ids = tokenizer.encode(prompt, /*add_bos=*/true);
  std::vector<std::int64_t> ids64(ids.begin(), ids.end());
  at::Tensor embeds =
      model.llm().embed(at::tensor(ids64, at::TensorOptions().dtype(at::kLong)).view({1, -1})).squeeze(0);
  GenerationResult r = generate(model.llm(), {embeds}, {seed}, o)[0];

  std::vector<std::int32_t> out;
  for (std::int64_t t : r.tokens)
    if (!(r.stopped_by_eos && t == o.eos_token_id)) out.push_back(std::int32_t(t));
  // Decode prompt + continuation and cut the prompt's text off, so that the first
  // generated word keeps its leading space ("time" + " there", not "there").
  std::vector<std::int32_t> all = ids;
  all.insert(all.end(), out.begin(), out.end());
  std::string full = tokenizer.decode(all), head = tokenizer.decode(ids);
  std::cout << (full.compare(0, head.size(), head) == 0 ? full.substr(head.size()) : tokenizer.decode(out)) << "\n";
  if (o.keep_logits) {
    at::Tensor l = r.logits.contiguous();
    std::vector<float> values(l.data_ptr<float>(), l.data_ptr<float>() + l.numel());
    write_safetensors(args.get("logits-out"), {float_tensor("logits", {l.size(0), l.size(1)}, values)});
  }
  return 0;
}

}  // namespace align2::cli
