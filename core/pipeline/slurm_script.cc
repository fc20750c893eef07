#include "core/pipeline/slurm_script.h"

#include <stdexcept>

namespace align2 {

namespace {

void refuse(const std::string& option, const std::string& why) {
  throw std::invalid_argument("--" + option + ": " + why);
}

void check_line(const std::string& option, const std::string& value) {
  if (value.find_first_of("\n\r") != std::string::npos) refuse(option, "a newline cannot go into a script line");
}

// An #SBATCH value: sbatch splits its lines at blanks outside double quotes (and strips the
// quotes); it has no escape for a double quote itself.
std::string sbatch_value(const std::string& option, const std::string& value) {
  check_line(option, value);
  if (value.find('"') != std::string::npos) refuse(option, "sbatch cannot read a double quote in an #SBATCH line");
  if (value.empty() || value.find_first_of(" \t#'\\$`") != std::string::npos) return "\"" + value + "\"";
  return value;
}

std::string line(const std::string& name, const std::string& value) {
  return "#SBATCH --" + name + "=" + sbatch_value(name, value) + "\n";
}

}  // namespace

std::string shell_quote(const std::string& text) {
  static const std::string plain =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=@%+,-";
  if (!text.empty() && text.find_first_not_of(plain) == std::string::npos) return text;
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}


std::string slurm_script(const SlurmScriptOptions& o) {
  if (o.nodes < 1) refuse("nodes", "at least 1");
  if (o.gpus_per_node < 0) refuse("gpus-per-node", "0 (CPU ranks) or more");
  if (o.gpus_per_node == 0 && o.ntasks_per_node < 1) refuse("ntasks-per-node", "at least 1");
  if (o.cpus_per_task < 0) refuse("cpus-per-task", "0 (the site's default) or more");
  if (o.signal_seconds < 0 || o.signal_seconds > 65535) refuse("signal-seconds", "0..65535");
  if (o.bin.empty()) refuse("bin", "empty");
  if (o.config.empty()) refuse("config", "empty");
  check_line("bin", o.bin);
  check_line("config", o.config);
  for (const std::string& s : o.sets) {
    check_line("set", s);
    if (s.find('=') == std::string::npos) refuse("set", s + ": expected KEY=VALUE");
  }

  const bool gpus = o.gpus_per_node > 0;
  const int per_node = gpus ? o.gpus_per_node : o.ntasks_per_node;
  std::string s = "#!/bin/bash\n";
  s += "# align2 curate as a Slurm batch job, written by `align2 slurm-script`. Submit: sbatch FILE\n";
  s += "# " + std::to_string(o.nodes) + " node(s) x " + std::to_string(per_node) + " rank(s) = " +
       std::to_string(o.nodes * per_node) + " MPI ranks" +
       (gpus ? ", one GPU reserved for each (each rank runs its models on its GPU with a CUDA libtorch, device auto; not yet verified on GPU).\n"
             : ", CPU only.\n");
  s += "# Submitting it again, or a requeue (preemption, node failure, the time limit), resumes:\n";
  s += "# curate commits chunks under output_dir/work and reuses them (docs/slurm.md).\n";
  s += line("job-name", o.job_name);
  s += line("nodes", std::to_string(o.nodes));
  s += line("ntasks-per-node", std::to_string(per_node));
  if (gpus) s += line("gpus-per-node", std::to_string(o.gpus_per_node));
  if (o.cpus_per_task > 0) s += line("cpus-per-task", std::to_string(o.cpus_per_task));
  if (!o.partition.empty()) s += line("partition", o.partition);
  if (!o.account.empty()) s += line("account", o.account);
  if (!o.time.empty()) s += line("time", o.time);
  if (!o.chdir.empty()) s += line("chdir", o.chdir);
  s += line("output", o.output);
  s += "#SBATCH --open-mode=append\n";
  s += "#SBATCH --requeue\n";
  // B: the batch shell gets the signal (and forwards it); without B: only the steps' tasks
  // would, and nobody would requeue the job.
  if (o.signal_seconds > 0) s += "#SBATCH --signal=B:USR1@" + std::to_string(o.signal_seconds) + "\n";
  for (const std::string& extra : o.sbatch) {
    check_line("sbatch", extra);
    if (extra.size() < 2 || extra[0] != '-') refuse("sbatch", extra + ": expected an sbatch option such as --mem=0");
    if (extra.find('"') != std::string::npos) refuse("sbatch", "sbatch cannot read a double quote in an #SBATCH line");
    s += "#SBATCH " + extra + "\n";
  }
  s += "\n";
  s += "# Site settings: uncomment what your cluster needs (docs/slurm.md).\n";
  s += "# module load openmpi cuda          # the MPI and CUDA align2 was built with\n";
  if (gpus) {
    s += "# export NCCL_DEBUG=WARN            # INFO: the rings and trees NCCL builds, once per job\n";
    s += "# export NCCL_SOCKET_IFNAME=ib0     # the interface NCCL's bootstrap uses (not lo or docker0)\n";
    s += "# export NCCL_IB_HCA=mlx5           # the InfiniBand adapters NCCL may use\n";
    s += "# export NCCL_IB_DISABLE=1          # no InfiniBand: NCCL over TCP sockets\n";
  }
  s += "# export OMPI_MCA_pml=ucx           # Open MPI over UCX (InfiniBand, RoCE)\n";
  s += "# export OMPI_MCA_btl=^openib       # and not the old openib transport\n";
  s += "# export OMPI_MCA_btl_tcp_if_include=eth0   # TCP: which interface MPI's messages use\n";
  s += "\n";
  s += "ALIGN2_BIN=" + shell_quote(o.bin) + "\n";
  s += "ALIGN2_CONFIG=" + shell_quote(o.config) + "\n";
  s += "ALIGN2_ARGS=(";
  for (std::size_t i = 0; i < o.sets.size(); ++i) s += (i ? " --set " : "--set ") + shell_quote(o.sets[i]);
  s += ")\n\n";
  s += kSlurmCurateBody;
  return s;
}

}  // namespace align2
