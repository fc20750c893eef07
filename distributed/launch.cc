#include "distributed/launch.h"
#include "distributed/mpi_comm.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "distributed/comm.h"
#include "distributed/nccl_comm.h"

namespace align2 {

namespace {

bool mpi_initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

bool mpi_finalized() {
  int flag = 0;
  MPI_Finalized(&flag);
  return flag != 0;
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

// Decimal integer in [0, INT_MAX] with nothing else around it; -1 otherwise.
int parse_non_negative(const std::string& text) {
  if (text.empty() || text.size() > 10) return -1;
  long long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value <= INT_MAX ? static_cast<int>(value) : -1;
}

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  if (mpi_initialized()) {
    throw std::logic_error("MpiSession: MPI is already initialised; create only one MpiSession");
  }
  int provided = 0;
  const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    throw std::runtime_error("MpiSession: MPI_Init_thread failed (code " + std::to_string(rc) + ")");
  }
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    throw std::runtime_error("MpiSession: MPI grants thread level " + std::to_string(provided) +
                             ", align2 needs MPI_THREAD_FUNNELED");
  }
}

MpiSession::~MpiSession() {
  if (mpi_initialized() && !mpi_finalized()) MPI_Finalize();
}

LaunchEnv read_launch_env() {
  LaunchEnv env;
  env.ompi_comm_world_size = env_or_empty("OMPI_COMM_WORLD_SIZE");
  env.pmi_size = env_or_empty("PMI_SIZE");
  env.slurm_ntasks = env_or_empty("SLURM_NTASKS");
  env.ompi_comm_world_local_rank = env_or_empty("OMPI_COMM_WORLD_LOCAL_RANK");
  env.slurm_localid = env_or_empty("SLURM_LOCALID");
  env.ompi_comm_world_rank = env_or_empty("OMPI_COMM_WORLD_RANK");
  env.pmi_rank = env_or_empty("PMI_RANK");
  env.slurm_procid = env_or_empty("SLURM_PROCID");
  env.cuda_visible_devices = env_or_empty("CUDA_VISIBLE_DEVICES");
  return env;
}

void check_world_size(const LaunchEnv& env, int mpi_world_size) {
  if (mpi_world_size != 1) return;
  struct Claim {
    const char* name;
    const std::string* value;
  };
  // OMPI_COMM_WORLD_SIZE, when present, is the launcher that started us: trust it alone.
  const bool from_mpirun = !env.ompi_comm_world_size.empty();
  const Claim from_ompi[] = {{"OMPI_COMM_WORLD_SIZE", &env.ompi_comm_world_size}};
  const Claim from_others[] = {{"SLURM_NTASKS", &env.slurm_ntasks}, {"PMI_SIZE", &env.pmi_size}};
  const Claim* begin = from_mpirun ? from_ompi : from_others;
  const Claim* end = from_mpirun ? from_ompi + 1 : from_others + 2;
  for (const Claim* c = begin; c != end; ++c) {
    const int expected = parse_non_negative(*c->value);
    if (expected > 1) {
      throw std::runtime_error(
          std::string("broken launch: ") + c->name + "=" + *c->value + " says " +
          std::to_string(expected) +
          " tasks, but MPI_COMM_WORLD has 1 rank, so every process started as its own "
          "1-rank MPI job and would process the whole corpus alone. Under Slurm launch with "
          "`srun --mpi=pmix` (Debian's Open MPI 4.1.4 works with PMIx only, not pmi2 or "
          "the default), or run `mpirun -np " +
          std::to_string(expected) +
          "`. Also check that the binary is linked against the MPI of the launcher.");
    }
  }
}

void check_world() {
  if (!mpi_initialized()) throw std::logic_error("check_world: MPI is not initialised");
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  check_world_size(read_launch_env(), size);
}

int local_rank_from_env(const LaunchEnv& env) {
  const int from_ompi = parse_non_negative(env.ompi_comm_world_local_rank);
  if (from_ompi >= 0) return from_ompi;
  return parse_non_negative(env.slurm_localid);
}

int local_rank() {
  const int from_env = local_rank_from_env(read_launch_env());
  if (from_env >= 0) return from_env;
  if (!mpi_initialized() || mpi_finalized()) return 0;
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) !=
      MPI_SUCCESS) {
    return 0;  // not reached with MPI_COMM_WORLD's default handler (abort on error)
  }
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
}

bool one_gpu_per_task_from_env(const LaunchEnv& env) {
  const std::string& v = env.cuda_visible_devices;
  return !v.empty() && v.find(',') == std::string::npos && v != "-1" && v != "NoDevFiles";
}

DeviceRequest parse_device_request(const std::string& name) {
  if (name == "auto") return DeviceRequest::automatic;
  if (name == "cuda") return DeviceRequest::cuda;
  if (name == "cpu") return DeviceRequest::cpu;
  throw std::invalid_argument("device \"" + name + "\": expected \"auto\", \"cuda\" or \"cpu\"");
}

const char* device_request_name(DeviceRequest request) {
  switch (request) {
    case DeviceRequest::automatic: return "auto";
    case DeviceRequest::cuda: return "cuda";
    case DeviceRequest::cpu: return "cpu";
  }
  return "?";
}

int choose_device(DeviceRequest request, int device_count, int local_rank, int ranks_on_node,
                  bool one_gpu_per_task, const std::string& no_gpu_reason) {
  if (local_rank < 0 || local_rank >= ranks_on_node)
    throw std::invalid_argument("choose_device: local rank " + std::to_string(local_rank) + " of " +
                                std::to_string(ranks_on_node) + " ranks on the node");
  if (request == DeviceRequest::cpu) return -1;
  if (device_count <= 0) {
    if (request == DeviceRequest::automatic) return -1;
    throw std::runtime_error("device cuda: " + no_gpu_reason);
  }
  if (device_count == 1 && one_gpu_per_task) return 0;
  if (ranks_on_node > device_count)
    throw std::runtime_error("device " + std::string(device_request_name(request)) + ": " +
                             std::to_string(ranks_on_node) + " ranks on this node but " +
                             std::to_string(device_count) +
                             " GPUs visible; align2 runs one GPU per rank: start at most " +
                             std::to_string(device_count) + " ranks per node, or set device to cpu");
  return local_rank;
}

std::string format_abort_line(const std::string& host, const std::string& rank,
                              const std::string& stage, const std::string& message) {
  return one_line(host) + ":" + one_line(rank) + " " + one_line(stage) + ": " + one_line(message);
}

void abort_job(const Comm* comm, const std::string& stage, const std::string& message, int code) {
  const bool mpi_up = mpi_initialized() && !mpi_finalized();
  std::string host;
  std::string rank;
  if (comm != nullptr) {
    host = comm->host();
    rank = std::to_string(comm->rank());
  } else {
    host = LocalComm().host();
    const LaunchEnv env = read_launch_env();
    for (const std::string* candidate : {&env.ompi_comm_world_rank, &env.pmi_rank, &env.slurm_procid}) {
      if (parse_non_negative(*candidate) >= 0) {
        rank = *candidate;
        break;
      }
    }
    if (rank.empty() && mpi_up) {
      int world_rank = 0;
      if (MPI_Comm_rank(MPI_COMM_WORLD, &world_rank) == MPI_SUCCESS) rank = std::to_string(world_rank);
    }
    if (rank.empty()) rank = "?";
  }
  const std::string line = format_abort_line(host, rank, stage, message) + "\n";
  std::fflush(stdout);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  if (mpi_up) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // MPI_Abort should not return; if it does, still end this process
}

#ifndef ALIGN2_HAVE_CUDA
// CPU-only build: nccl_comm.cc is not compiled, but cuda_device_count() is
// declared for everyone (nccl_comm.h), so CPU code can ask without #ifdefs.
int cuda_device_count() { return 0; }
#endif

World open_world() {
  World world;
  bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("SLURM_NTASKS");
  if (launched) {
    world.session = std::make_unique<MpiSession>(nullptr, nullptr);
    check_world();
    world.comm = std::make_unique<MpiComm>();
  } else {
    world.comm = std::make_unique<LocalComm>();
  }
  return world;
}

}  // namespace align2
