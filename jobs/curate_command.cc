// align2 curate: the Align²LLaVA cascade over a pool, alone or under mpirun / srun.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "core/pipeline/curation.h"
#include "core/engine/engine_factory.h"
#include "distributed/launch.h"
#include "distributed/nccl_comm.h"
#include "jobs/cli.h"
#include "core/util/stop.h"

namespace align2::cli {

int run_curate(const Args& args) {
  std::string config_path = args.get("config");
  if (config_path.empty()) throw UsageError("--config is required");
  World world = open_world();  // under mpirun / srun the ranks work together; alone, one process
  install_stop_handlers();     // SIGTERM / SIGUSR1: commit the current chunk, stop, rerun resumes
  std::unique_ptr<Comm>& comm = world.comm;
  std::string stage = "config";
  try {
    JobConfig config = load_job_config(config_path, args.all("set"));
    if (config.models.question_model.empty() || config.models.answer_model.empty())
      throw std::runtime_error(fmt::format("{}: question_model and answer_model must name reward-model folders "
                                           "(docs/reward-models.md)", config_path));
    configure_engine_threads(config.run.threads);  // the config's, else the node's cores / ranks
    stage = "device";
    const int device = engine_device_index(config.models);
    DataComm data(*comm, device);  // scores travel through NCCL between GPU ranks, through MPI between CPU ranks
    stage = "load models";
    std::unique_ptr<Scorer> scorer = make_reward_scorer(config.models, config.pool.image_root, device);
    std::unique_ptr<Rewriter> rewriter;  // stage 3: by default the question model's base MLLM
    if (config.rewrite.enabled) rewriter = make_rewriter(config.rewrite, config.models, config.pool.image_root, device);
    stage = "curate";
    CurationOptions options;
    options.force = args.flag("force");
    CurationResult r = run_curation(data.comm(), config, *scorer, options, rewriter.get());
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
