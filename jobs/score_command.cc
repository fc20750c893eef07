// align2 score: one reward model over a pool → an HDF5 file of every record's scores.
#include <fmt/format.h>

#include <iostream>

#include "core/data/inspect.h"
#include "core/engine/reward_scoring.h"
#include "core/util/version.h"
#include "core/model/memory_estimate.h"
#include "jobs/cli.h"
#include "jobs/engine_args.h"

namespace align2::cli {

int run_score(const Args& args) {
  std::string model_dir = args.get("model"), input = args.get("input"), output = args.get("output");
  if (model_dir.empty() || input.empty() || output.empty())
    throw UsageError("--model, --input and --output are required");
  RewardKind kind;
  try {
    kind = reward_kind_from_name(args.get("kind"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--kind: {}", e.what()));
  }
  const std::string aspect = args.get("image-aspect");
  if (!aspect.empty() && aspect != "pad" && aspect != "square")
    throw UsageError("--image-aspect " + aspect + ": expected pad or square");
  parse_threads(args);
  const EngineChoice engine = parse_engine(args);
  const RewardConfig config = load_reward_config(model_dir);
  require_memory(estimate_model_memory(reward_base_spec(config), std::size_t(at::elementSize(engine.dtype)),
                                       config.max_length, 1, false),
                 memory_budget(engine.device), "the reward model " + model_dir);
  RewardModel model(model_dir, engine.dtype, engine.device);
  if (model.config().kind != kind)
    throw std::runtime_error(fmt::format("{} is a {} reward model, but --kind {} was asked", model_dir,
                                         reward_kind_name(model.config().kind), reward_kind_name(kind)));
  IndexOptions io;
  io.validation.image_root = args.get("image-root");
  io.validation.subset_field = args.get("subset-field");
  PoolIndex index = build_index({{input, ""}}, io);

  ScoringOptions so;
  so.image_root = io.validation.image_root;
  so.image_aspect = args.get("image-aspect");
  std::uint64_t step = std::max<std::uint64_t>(1, index.entries.size() / 20);
  so.progress = [&](std::uint64_t done, std::uint64_t all) {
    if (done % step == 0 || done == all) std::cerr << fmt::format("score: {} / {} records\n", done, all);
  };
  std::vector<ShardRow> rows = score_pool(model, index, so);

  ShardMeta meta;
  meta.align2_version = align2_version();
  meta.config_fingerprint = std::string(reward_kind_name(kind)) + ":" + model_dir + ":" +
                            aspect_mode_name(reward_image_spec(model.llava().spec(), so.image_aspect).aspect);
  meta.input_fingerprint = index.fingerprint;
  meta.stage = kind == RewardKind::question ? "select_questions" : "select_answers";
  meta.input_records = index.entries.size();
  write_shard(output, meta, rows);
  std::uint64_t scored = 0;
  for (const ShardRow& r : rows) scored += r.status == Status::valid;
  std::cout << fmt::format("{}: {} records, {} scored with the {} reward model\n", output, rows.size(), scored,
                           reward_kind_name(kind));
  return 0;
}

}  // namespace align2::cli
