// align2 merge-lora: a reward model's LoRA adapter merged into its base model's weights.
#include <fmt/format.h>

#include <iostream>

#include "core/engine/engine_runtime.h"
#include "core/engine/reward_model.h"
#include "jobs/cli.h"
#include "jobs/engine_args.h"

namespace align2::cli {


int run_merge_lora(const Args& args) {
  std::string base = args.get("base"), adapter = args.get("adapter"), out = args.get("output-dir");
  if (base.empty() || adapter.empty() || out.empty())
    throw UsageError("--base, --adapter and --output-dir are required");
  parse_threads(args);
  merge_reward_model(base, adapter, out);
  std::cout << fmt::format("{}: merged reward model (base {}, adapter {})\n", out, base, adapter);
  return 0;
}

}  // namespace align2::cli
