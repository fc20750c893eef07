// align2 rewrite: stage 3 (LLM characteristic alignment) alone over any LLaVA pool, alone or
// under mpirun / srun: every valid record is rewritten and reviewed, none is selected away.
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/pipeline/curation.h"
#include "core/engine/engine_factory.h"
#include "distributed/launch.h"
#include "distributed/nccl_comm.h"
#include "jobs/cli.h"
#include "core/util/stop.h"

namespace align2::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The job config with --input as its pools and --output-dir as its output_dir (both relative
// to the current folder, as --set paths are), after the user's --set overrides. Entries of
// `subsets` that name no input file are dropped: they belong to the config's own pools.
JobConfig rewrite_job_config(const std::string& path, const std::vector<std::string>& inputs,
                             const std::string& output_dir, std::vector<std::string> overrides) {
  json config = read_job_config_json(path);
  if (config.is_object() && config.contains("subsets") && config["subsets"].is_object()) {
    json kept = json::object();
    for (auto& [name, subset] : config["subsets"].items())
      for (const std::string& input : inputs)
        if (fs::path(input).filename().string() == name) kept[name] = subset;
    config["subsets"] = kept;
  }
  overrides.push_back("pools=" + json(inputs).dump());
  overrides.push_back("output_dir=" + json(output_dir).dump());
  return parse_job_config(std::move(config), job_config_dir(path), overrides, path);
}

}  // namespace

int run_rewrite(const Args& args) {
  const std::string config_path = args.get("config"), output_dir = args.get("output-dir");
  const std::vector<std::string> inputs = args.all("input");
  if (config_path.empty() || inputs.empty() || output_dir.empty())
    throw UsageError("--config, --input and --output-dir are required");
  World world = open_world();  // under mpirun / srun the ranks work together; alone, one process
  install_stop_handlers();     // SIGTERM / SIGUSR1: commit the current chunk, stop, rerun resumes
  std::unique_ptr<Comm>& comm = world.comm;
  std::string stage = "config";
  try {
    JobConfig config = rewrite_job_config(config_path, inputs, output_dir, args.all("set"));
    configure_engine_threads(config.run.threads);  // the config's, else the node's cores / ranks
    stage = "device";
    const int device = engine_device_index(config.models);
    DataComm data(*comm, device);  // NCCL between GPU ranks, MPI between CPU ranks
    stage = "load model";
    std::unique_ptr<Rewriter> rewriter = make_rewriter(config.rewrite, config.models, config.pool.image_root, device);
    stage = "rewrite";
    CurationOptions options;
    options.force = args.flag("force");
    CurationResult r = run_rewrite(data.comm(), config, *rewriter, options);
    if (comm->rank() == 0)
      std::cout << fmt::format("{} input records, {} valid ones attempted; rewrites kept in {} of them\n{}\n{}\n{}\n{}\n",
                               r.input_records, r.rewrite["attempted"].get<std::uint64_t>(),
                               r.rewrite["kept_rewrite"].get<std::uint64_t>(), r.merged.curated_path,
                               r.merged.scores_path, r.merged.summary_path, r.merged.report_path);
  } catch (const std::exception& e) {
    if (comm->size() > 1) abort_job(comm.get(), stage, e.what());
    throw;
  }
  return 0;
}

}  // namespace align2::cli
