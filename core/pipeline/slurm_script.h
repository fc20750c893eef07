// The sbatch script of `align2 slurm-script`: one curate run as a Slurm batch job, one MPI
// rank per GPU (or --ntasks-per-node CPU ranks), launched with `srun --mpi=pmix`, requeued
// when its time runs out. Pure text generation: no file system, no Slurm calls.
#pragma once

#include <string>
#include <vector>

namespace align2 {

struct SlurmScriptOptions {
  std::string bin;     // the align2 binary (absolute path)
  std::string config;  // the job config (absolute path)
  std::vector<std::string> sets;  // KEY=VALUE, passed to curate as --set KEY=VALUE
  int nodes = 1;
  int gpus_per_node = 0;    // > 0: one rank per GPU; 0: CPU ranks, ntasks_per_node of them per node
  int ntasks_per_node = 1;  // used when gpus_per_node == 0
  int cpus_per_task = 0;    // 0 = no --cpus-per-task line (the site's default)
  std::string partition;    // "" = no line (the site's default)
  std::string account;
  std::string time;         // Slurm time limit, e.g. 12:00:00 or 2-00:00:00; "" = the partition's
  std::string job_name = "align2-curate";
  std::string output = "%x-%j.out";  // log path pattern (sbatch --output), appended to across requeues
  std::string chdir;        // working folder of the job; "" = sbatch's default (the submission folder)
  int signal_seconds = 300; // USR1 to the batch shell this long before the time limit; 0 = none
  std::vector<std::string> sbatch;  // extra sbatch options, one #SBATCH line each (e.g. --mem=0)
};

// `text` as one shell word: unchanged when it holds only [A-Za-z0-9_./:=@%+,-] (and is not
// empty), else in single quotes with each ' written as '\''.
std::string shell_quote(const std::string& text);

// The complete script (#!/bin/bash, #SBATCH lines, the variables, kSlurmCurateBody).
// Throws std::invalid_argument naming the option for a value sbatch or the shell cannot
// carry (a newline anywhere; a double quote in an #SBATCH value; nodes < 1, gpus < 0,
// ntasks_per_node < 1, signal_seconds < 0 or > 65535, an sbatch entry not starting with "-").
std::string slurm_script(const SlurmScriptOptions& options);

// The part after the variables, byte-identical in slurm/curate.sbatch (a test checks):
// reads ALIGN2_BIN, ALIGN2_CONFIG and the array ALIGN2_ARGS; runs
// `srun --mpi=pmix --kill-on-bad-exit=1 "$ALIGN2_BIN" curate --config "$ALIGN2_CONFIG" "${ALIGN2_ARGS[@]}"`
// in the background; on USR1 (sbatch --signal=B:USR1@S) forwards USR1 to srun (which hands
// it to every rank), waits for the step to end and requeues the job with `scontrol requeue`
// (whatever the step's exit status); the requeued job runs the same command, which resumes.
// Without USR1 the script exits with srun's status.
extern const char* const kSlurmCurateBody;

}  // namespace align2
