// align2 curate: the Align²LLaVA cascade over a pool, alone or under mpirun / srun.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "core/curation.h"
#include "core/engine_runtime.h"
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
    stage = "curate";
    CurationOptions options;
    options.force = args.flag("force");
    CurationResult r = run_curation(*comm, config, scorer, options);
    if (comm->rank() == 0)
      std::cout << fmt::format("{} input records; {} kept by stage 1, {} by stage 2\n{}\n{}\n{}\n{}\n",
                               r.input_records, r.stage1_kept, r.stage2_kept, r.merged.curated_path,
                               r.merged.scores_path, r.merged.summary_path, r.merged.report_path);
  } catch (const std::exception& e) {
    if (comm->size() > 1) abort_job(comm.get(), stage, e.what());
    throw;
  }
  return 0;
}

}  // namespace align2::cli
