// align2 curate: the Align²LLaVA cascade over a pool, alone or under mpirun / srun.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "core/curation.h"
#include "core/engine_runtime.h"
#include "core/llm_rewriter.h"
#include "core/reward_model.h"
#include "core/reward_scorer.h"
#include "distributed/launch.h"
#include "jobs/cli.h"

namespace align2::cli {

int run_curate(const Args& args) {
  std::string config_path = args.get("config");
  if (config_path.empty()) throw UsageError("--config is required");
  World world = open_world();  // under mpirun / srun the ranks work together; alone, one process
  std::unique_ptr<Comm>& comm = world.comm;
  std::string stage = "config";
  try {
    JobConfig config = load_job_config(config_path, args.all("set"));
    if (config.question_model.empty() || config.answer_model.empty())
      throw std::runtime_error(fmt::format("{}: question_model and answer_model must name reward-model folders "
                                           "(docs/reward-models.md)", config_path));
    // Threads: the config's, else this node's cores shared by the ranks on it.
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    int ranks_here = std::max(1, std::atoi(std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE") ? std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")
                                                                                     : "1"));
    configure_cpu_engine(config.threads ? int(config.threads) : std::max(1, int(cores) / ranks_here));
    stage = "load models";
    RewardScorer scorer(config.question_model, config.answer_model, config.image_root,
                        config.dtype == "bf16" ? at::kBFloat16 : at::kFloat);
    std::unique_ptr<LlmRewriter> rewriter;
    if (config.rewrite) {  // stage 3: by default the MLLM the question reward model was trained on
      std::string model = config.rewrite_model.empty() ? load_reward_config(config.question_model).base_model
                                                       : config.rewrite_model;
      RewriteSettings settings;
      settings.chat_template = template_from_name(config.rewrite_template);
      settings.max_new_tokens = std::int64_t(config.rewrite_max_new_tokens);
      settings.temperature = config.rewrite_temperature;
      settings.top_p = config.rewrite_top_p;
      settings.label_a = config.review_labels[0];
      settings.label_b = config.review_labels[1];
      settings.threshold = config.review_threshold;
      settings.limits = {config.rewrite_min_ratio, config.rewrite_max_ratio};
      settings.batch_size = config.rewrite_batch;
      settings.batch_tokens = 0;  // a group is one call: its composition must not depend on lengths elsewhere
      rewriter = std::make_unique<LlmRewriter>(model, config.image_root,
                                               config.dtype == "bf16" ? at::kBFloat16 : at::kFloat, settings,
                                               load_rewrite_templates(config.rewrite_prompt, config.review_prompt));
    }
    stage = "curate";
    CurationOptions options;
    options.force = args.flag("force");
    CurationResult r = run_curation(*comm, config, scorer, options, rewriter.get());
    if (comm->rank() == 0)
      std::cout << fmt::format("{} input records; {} kept by stage 1, {} by stage 2{}\n{}\n{}\n{}\n{}\n",
                               r.input_records, r.stage1_kept, r.stage2_kept,
                               r.rewrite.is_null() ? std::string()
                                                   : fmt::format("; rewrites kept in {} of them",
                                                                 r.rewrite["kept_rewrite"].get<std::uint64_t>()),
                               r.merged.curated_path, r.merged.scores_path, r.merged.summary_path,
                               r.merged.report_path);
  } catch (const std::exception& e) {
    if (comm->size() > 1) abort_job(comm.get(), stage, e.what());
    throw;
  }
  return 0;
}

}  // namespace align2::cli
