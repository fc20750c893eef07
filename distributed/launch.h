// Process launch: MPI start and stop, checking that the launcher really built one
// MPI job, which GPU this rank uses, and how a rank ends the whole job on error.
// mpi.h stays out of this header: everything here takes plain ints and strings.
#pragma once

#include <memory>
#include <string>

namespace align2 {

class Comm;

// RAII owner of the MPI library's lifetime in this process. Create one at the top
// of main(), before any MpiComm; destroy it after every MpiComm is gone.
class MpiSession {
 public:
  // MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED): only the thread that built
  // the session calls MPI. argc/argv may be null. Throws std::runtime_error when
  // MPI offers less than FUNNELED (after finalising), or std::logic_error when
  // MPI was already initialised by someone else.
  MpiSession(int* argc, char*** argv);
  // MPI_Finalize, unless MPI is already finalised (a job that called MPI_Abort
  // never gets here). Collective: every rank must reach it.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// This process's place in the job. Under a launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
// SLURM_NTASKS set) MPI is started (`session` keeps it alive: it is declared first, so it
// is destroyed last), the world size is checked (check_world) and `comm` is an MpiComm over
// MPI_COMM_WORLD; otherwise `comm` is a LocalComm and MPI is never started.
struct World {
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Comm> comm;
};
World open_world();

// What the launcher's environment variables say. Empty string = variable not set.
struct LaunchEnv {
  std::string ompi_comm_world_size;        // OMPI_COMM_WORLD_SIZE (set by Open MPI's mpirun)
  std::string pmi_size;                    // PMI_SIZE (PMI-1/PMI-2 launchers, MPICH's mpiexec)
  std::string slurm_ntasks;                // SLURM_NTASKS (Slurm job or step)
  std::string ompi_comm_world_local_rank;  // OMPI_COMM_WORLD_LOCAL_RANK
  std::string slurm_localid;               // SLURM_LOCALID
  std::string ompi_comm_world_rank;        // OMPI_COMM_WORLD_RANK
  std::string pmi_rank;                    // PMI_RANK
  std::string slurm_procid;                // SLURM_PROCID
  std::string cuda_visible_devices;        // CUDA_VISIBLE_DEVICES
};

// Reads the variables above from this process's environment.
LaunchEnv read_launch_env();

// The broken-launch check as a pure function. Throws std::runtime_error when the
// environment promises N > 1 tasks but MPI_COMM_WORLD has `mpi_world_size` == 1:
// then every process started as its own one-rank MPI job (typically plain `srun`
// without --mpi=pmix, or a binary built against another MPI than the launcher's),
// and each would process the whole corpus alone. The message names the variable
// and says to use `srun --mpi=pmix` or `mpirun`.
// Which variables count: OMPI_COMM_WORLD_SIZE when set (then the process came from
// Open MPI's mpirun, which is authoritative even inside a bigger Slurm allocation,
// e.g. `mpirun -np 1` under salloc -n 4); otherwise PMI_SIZE and SLURM_NTASKS. A
// value that is not a positive integer is ignored. World sizes above 1 are never
// second-guessed.
void check_world_size(const LaunchEnv& env, int mpi_world_size);

// check_world_size(read_launch_env(), size of MPI_COMM_WORLD). Needs MPI initialised.
void check_world();

// This rank's index among the ranks on its machine: OMPI_COMM_WORLD_LOCAL_RANK,
// else SLURM_LOCALID, else (MPI initialised) the rank in
// MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED) - that fallback is
// collective over MPI_COMM_WORLD, so call local_rank() on every rank or none.
// 0 when none of these is available.
int local_rank();

// The local rank from the environment alone, or -1 when neither variable holds a
// non-negative integer. (local_rank() minus the MPI fallback; unit-testable.)
int local_rank_from_env(const LaunchEnv& env);

// Whether the launcher bound one GPU to this task: CUDA_VISIBLE_DEVICES names exactly one
// device (Slurm's --gpus-per-task=1 or --gpu-bind=single:1 set it per task). choose_device's
// `one_gpu_per_task`.
bool one_gpu_per_task_from_env(const LaunchEnv& env);

// Where a rank runs its models: the job-config key `device` and the `--device` flag.
//   automatic ("auto"): a GPU when libtorch has CUDA and one is visible, else the CPU;
//   cuda: a GPU, or an error; cpu: the CPU.
enum class DeviceRequest { automatic, cuda, cpu };

// "auto", "cuda", "cpu" -> the request; anything else throws std::invalid_argument naming it.
DeviceRequest parse_device_request(const std::string& name);
const char* device_request_name(DeviceRequest request);

// Which GPU this rank drives, or -1 for the CPU. One GPU per rank: the rank with local
// index `local_rank` (0-based, of `ranks_on_node` ranks on this machine) takes GPU
// `local_rank` of the `device_count` this process sees.
//   cpu -> -1.
//   automatic with device_count == 0 -> -1.
//   cuda with device_count == 0 -> std::runtime_error "device cuda: <no_gpu_reason>".
//   a GPU wanted and ranks_on_node > device_count -> std::runtime_error naming both counts
//   (two ranks must not share a GPU; start at most device_count ranks per node, or use cpu).
// Exception: device_count == 1 with ranks_on_node > 1 is accepted when `one_gpu_per_task`
// (the launcher bound one GPU to each task, CUDA_VISIBLE_DEVICES differing per rank: each
// rank sees its own as GPU 0). Throws std::invalid_argument for local_rank < 0 or
// local_rank >= ranks_on_node.
int choose_device(DeviceRequest request, int device_count, int local_rank, int ranks_on_node,
                  bool one_gpu_per_task, const std::string& no_gpu_reason);

// The one line abort_job prints, without the newline: "host:rank stage: message".
// Newlines and carriage returns inside `message` or `stage` become spaces, so the
// line stays one line in a log interleaved from many ranks.
std::string format_abort_line(const std::string& host, const std::string& rank,
                              const std::string& stage, const std::string& message);

// Ends the whole job from one rank: prints format_abort_line(...) + '\n' to stderr
// in one write, flushes stdout and stderr, then MPI_Abort(MPI_COMM_WORLD, code) if
// MPI is initialised and not finalised (kills every rank), else std::exit(code).
// `comm` may be null: then the host comes from gethostname and the rank from
// OMPI_COMM_WORLD_RANK / PMI_RANK / SLURM_PROCID, MPI_COMM_WORLD's rank when MPI
// is up, or "?". Not collective: one rank may call it alone.
[[noreturn]] void abort_job(const Comm* comm, const std::string& stage, const std::string& message,
                            int code = 1);

}  // namespace align2
