// align2 slurm-script: prints an sbatch script that runs `align2 curate` over Slurm's ranks.
#include <fmt/format.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "core/pipeline/job_config.h"
#include "core/pipeline/slurm_script.h"
#include "jobs/cli.h"

namespace align2::cli {

namespace {

namespace fs = std::filesystem;

std::string running_binary() {
  char buffer[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe: give --bin");
  return std::string(buffer, std::size_t(n));
}

std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

}  // namespace

int run_slurm_script(const Args& args) {
  SlurmScriptOptions o;
  std::string config = args.get("config");
  if (config.empty()) throw UsageError("--config is required");
  if (!args.values.count("nodes")) throw UsageError("--nodes is required");
  if (!args.values.count("gpus-per-node")) throw UsageError("--gpus-per-node is required (0: CPU ranks)");
  o.config = absolute(config);
  o.sets = args.all("set");
  o.nodes = int(int_option(args, "nodes", 1, 1, 100000));
  o.gpus_per_node = int(int_option(args, "gpus-per-node", 0, 0, 1024));
  o.ntasks_per_node = int(int_option(args, "ntasks-per-node", 1, 1, 100000));
  if (o.gpus_per_node > 0 && args.values.count("ntasks-per-node") && o.ntasks_per_node != o.gpus_per_node)
    throw UsageError("--ntasks-per-node goes with --gpus-per-node 0; with GPUs there is one rank per GPU");
  o.cpus_per_task = int(int_option(args, "cpus-per-task", 0, 0, 100000));
  o.partition = args.get("partition");
  o.account = args.get("account");
  o.time = args.get("time");
  o.job_name = args.get("job-name", o.job_name);
  o.output = args.get("output", o.output);
  o.signal_seconds = int(int_option(args, "signal-seconds", o.signal_seconds, 0, 65535));
  o.sbatch = args.all("sbatch");
  o.chdir = absolute(args.get("chdir", fs::current_path().string()));
  o.bin = args.values.count("bin") ? absolute(args.get("bin")) : running_binary();

  // The config must load now, on the login node, not hours later when the job starts.
  JobConfig loaded = load_job_config(o.config, o.sets);
  if (loaded.models.question_model.empty() || loaded.models.answer_model.empty())
    throw std::runtime_error(fmt::format("{}: question_model and answer_model must name reward-model folders "
                                         "(docs/reward-models.md)", o.config));
  std::string script;
  try {
    script = slurm_script(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::cout << script;
  std::cerr << fmt::format("align2 slurm-script: {} rank(s); output_dir {}\n",
                           o.nodes * (o.gpus_per_node > 0 ? o.gpus_per_node : o.ntasks_per_node),
                           loaded.run.output_dir);
  return 0;
}

}  // namespace align2::cli
