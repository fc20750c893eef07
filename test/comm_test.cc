// Single-process tests: LocalComm (every method, empty buffers) and the parts of
// launch.h that need no MPI job (world-size check, local rank, device index,
// abort line and abort_job's exit path).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/comm.h"
#include "distributed/launch.h"
#include "distributed/nccl_comm.h"

namespace align2 {
namespace {

using Bytes = std::vector<std::uint8_t>;

TEST(LocalComm, RankSizeHost) {
  LocalComm comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_FALSE(comm.host().empty());
  comm.barrier();
}

TEST(LocalComm, BroadcastKeepsBytes) {
  LocalComm comm;
  Bytes bytes = {1, 2, 3};
  comm.broadcast(bytes, 0);
  EXPECT_EQ(bytes, (Bytes{1, 2, 3}));
  Bytes empty;
  comm.broadcast(empty, 0);
  EXPECT_TRUE(empty.empty());
  EXPECT_THROW(comm.broadcast(bytes, 1), std::invalid_argument);
  EXPECT_THROW(comm.broadcast(bytes, -1), std::invalid_argument);
}

TEST(LocalComm, GathervReturnsOwnContribution) {
  LocalComm comm;
  const Bytes mine = {9, 8, 7, 6};
  auto all = comm.gatherv(mine, 0);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], mine);
  auto empty = comm.gatherv(Bytes{}, 0);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].empty());
  EXPECT_THROW(comm.gatherv(mine, 2), std::invalid_argument);
}

TEST(LocalComm, AllgathervReturnsOwnContribution) {
  LocalComm comm;
  const Bytes mine = {42};
  auto all = comm.allgatherv(mine);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], mine);
  auto empty = comm.allgatherv(Bytes{});
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].empty());
}

TEST(LocalComm, AllreduceLeavesValues) {
  LocalComm comm;
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
    std::vector<double> d = {1.5, -2.0};
    std::vector<float> f = {3.25f};
    std::vector<std::int64_t> i = {-7, 1LL << 40};
    comm.allreduce(d.data(), d.size(), op);
    comm.allreduce(f.data(), f.size(), op);
    comm.allreduce(i.data(), i.size(), op);
    EXPECT_EQ(d, (std::vector<double>{1.5, -2.0}));
    EXPECT_EQ(f, (std::vector<float>{3.25f}));
    EXPECT_EQ(i, (std::vector<std::int64_t>{-7, 1LL << 40}));
    // n == 0 with a null pointer is allowed.
    comm.allreduce(static_cast<double*>(nullptr), 0, op);
    comm.allreduce(static_cast<float*>(nullptr), 0, op);
    comm.allreduce(static_cast<std::int64_t*>(nullptr), 0, op);
  }
}

TEST(LocalComm, UsableThroughBaseClass) {
  std::unique_ptr<Comm> comm = std::make_unique<LocalComm>();
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->allgatherv(Bytes{5}).at(0), Bytes{5});
}

// --- launch.h

// The data communicator: CPU ranks use the host communicator itself (MPI in a job); a GPU
// that cannot be had is refused, on every rank, before anything is sent.
TEST(DataComm, CpuRanksUseTheHostCommunicator) {
  LocalComm host;
  DataComm data(host, -1);
  EXPECT_FALSE(data.uses_nccl());
  EXPECT_EQ(&data.comm(), &host);
  EXPECT_EQ(data.device_comm(), nullptr);
}

TEST(DataComm, AGpuThatCannotBeHadIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: the gpu-labelled nccl_comm_test covers it";
  LocalComm host;
  try {
    DataComm data(host, 0);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("cudaSetDevice") != std::string::npos || what.find("built without CUDA") != std::string::npos)
        << what;
  }
}

TEST(Launch, WorldCheckThrowsWithSrunHintWhenSlurmSaysMoreTasks) {
  LaunchEnv env;
  env.slurm_ntasks = "2";
  try {
    check_world_size(env, 1);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("srun --mpi=pmix"), std::string::npos) << what;
    EXPECT_NE(what.find("mpirun"), std::string::npos) << what;
    EXPECT_NE(what.find("SLURM_NTASKS=2"), std::string::npos) << what;
  }
}

TEST(Launch, WorldCheckOtherVariables) {
  LaunchEnv pmi;
  pmi.pmi_size = "4";
  EXPECT_THROW(check_world_size(pmi, 1), std::runtime_error);
  LaunchEnv ompi;
  ompi.ompi_comm_world_size = "3";
  EXPECT_THROW(check_world_size(ompi, 1), std::runtime_error);
}

TEST(Launch, WorldCheckAcceptsConsistentLaunches) {
  LaunchEnv none;
  EXPECT_NO_THROW(check_world_size(none, 1));  // plain ./align2
  LaunchEnv one;
  one.slurm_ntasks = "1";
  EXPECT_NO_THROW(check_world_size(one, 1));
  LaunchEnv srun;
  srun.slurm_ntasks = "2";
  EXPECT_NO_THROW(check_world_size(srun, 2));  // srun --mpi=pmix -n 2
  LaunchEnv mpirun_one_in_allocation;           // salloc -n 4; mpirun -np 1
  mpirun_one_in_allocation.slurm_ntasks = "4";
  mpirun_one_in_allocation.ompi_comm_world_size = "1";
  EXPECT_NO_THROW(check_world_size(mpirun_one_in_allocation, 1));
  LaunchEnv garbage;
  garbage.slurm_ntasks = "2(x3)";
  EXPECT_NO_THROW(check_world_size(garbage, 1));
}

TEST(Launch, WorldCheckWithoutMpiEnvironmentReadsNothingStale) {
  // read_launch_env reflects the process environment.
  ::setenv("SLURM_NTASKS", "5", 1);
  LaunchEnv env = read_launch_env();
  EXPECT_EQ(env.slurm_ntasks, "5");
  EXPECT_THROW(check_world_size(env, 1), std::runtime_error);
  ::unsetenv("SLURM_NTASKS");
  EXPECT_TRUE(read_launch_env().slurm_ntasks.empty());
}

TEST(Launch, LocalRankFromEnv) {
  LaunchEnv env;
  EXPECT_EQ(local_rank_from_env(env), -1);
  env.slurm_localid = "3";
  EXPECT_EQ(local_rank_from_env(env), 3);
  env.ompi_comm_world_local_rank = "1";  // mpirun wins over Slurm
  EXPECT_EQ(local_rank_from_env(env), 1);
  env.ompi_comm_world_local_rank = "x";
  EXPECT_EQ(local_rank_from_env(env), 3);
}

TEST(Launch, DeviceRequestNames) {
  for (DeviceRequest r : {DeviceRequest::automatic, DeviceRequest::cuda, DeviceRequest::cpu})
    EXPECT_EQ(parse_device_request(device_request_name(r)), r);
  EXPECT_THROW(parse_device_request("gpu"), std::invalid_argument);
  EXPECT_THROW(parse_device_request(""), std::invalid_argument);
}

TEST(Launch, ChooseDeviceGivesEachLocalRankItsOwnGpu) {
  using R = DeviceRequest;
  // cpu: always the CPU, whatever is visible.
  EXPECT_EQ(choose_device(R::cpu, 4, 2, 4, false, ""), -1);
  // auto: the CPU without GPUs, else GPU = local rank.
  EXPECT_EQ(choose_device(R::automatic, 0, 1, 2, false, "no GPU"), -1);
  EXPECT_EQ(choose_device(R::automatic, 4, 0, 4, false, ""), 0);
  EXPECT_EQ(choose_device(R::automatic, 4, 3, 4, false, ""), 3);
  EXPECT_EQ(choose_device(R::cuda, 8, 1, 2, false, ""), 1);  // fewer ranks than GPUs: fine
  // A launcher that bound one GPU per task: each rank sees its own GPU as 0.
  EXPECT_EQ(choose_device(R::cuda, 1, 3, 4, true, ""), 0);
  EXPECT_EQ(choose_device(R::automatic, 1, 2, 4, true, ""), 0);
  EXPECT_THROW(choose_device(R::cuda, 0, 0, 1, false, ""), std::runtime_error);
  EXPECT_THROW(choose_device(R::cpu, 4, -1, 4, false, ""), std::invalid_argument);
  EXPECT_THROW(choose_device(R::cpu, 4, 4, 4, false, ""), std::invalid_argument);
}

TEST(Launch, ChooseDeviceRefusesWithBothFigures) {
  try {
    choose_device(DeviceRequest::cuda, 0, 0, 1, false, "this libtorch was built without CUDA");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "device cuda: this libtorch was built without CUDA");
  }
  for (DeviceRequest r : {DeviceRequest::automatic, DeviceRequest::cuda}) {
    try {
      choose_device(r, 2, 0, 4, false, "");  // 4 ranks, 2 GPUs: two ranks would share one
      FAIL() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("4 ranks on this node but 2 GPUs visible"), std::string::npos) << e.what();
    }
  }
}

TEST(Launch, OneGpuPerTaskFromEnv) {
  LaunchEnv env;
  EXPECT_FALSE(one_gpu_per_task_from_env(env));
  env.cuda_visible_devices = "2";
  EXPECT_TRUE(one_gpu_per_task_from_env(env));
  env.cuda_visible_devices = "GPU-5d3c1f2a-0000-1111-2222-333344445555";
  EXPECT_TRUE(one_gpu_per_task_from_env(env));
  env.cuda_visible_devices = "0,1";
  EXPECT_FALSE(one_gpu_per_task_from_env(env));
  env.cuda_visible_devices = "-1";
  EXPECT_FALSE(one_gpu_per_task_from_env(env));
}

TEST(Launch, CudaDeviceCountNeverThrows) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda_device_count());
  EXPECT_GE(n, 0);
}

TEST(Launch, AbortLineFormat) {
  EXPECT_EQ(format_abort_line("node7", "3", "score", "model missing"), "node7:3 score: model missing");
  EXPECT_EQ(format_abort_line("h", "?", "read", "bad\nrecord\r"), "h:? read: bad record ");
}

TEST(LaunchDeathTest, AbortJobWithoutMpiExitsWithCodeAndOneLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  LocalComm comm;
  const std::string host = comm.host();
  EXPECT_EXIT(abort_job(&comm, "merge", "disk full", 3), ::testing::ExitedWithCode(3),
              "^" + host + ":0 merge: disk full\n$");
  EXPECT_EXIT(
      {
        ::unsetenv("OMPI_COMM_WORLD_RANK");
        ::unsetenv("PMI_RANK");
        ::setenv("SLURM_PROCID", "6", 1);
        abort_job(nullptr, "load", "two\nlines", 2);
      },
      ::testing::ExitedWithCode(2), "^" + host + ":6 load: two lines\n$");
  EXPECT_EXIT(
      {
        ::unsetenv("OMPI_COMM_WORLD_RANK");
        ::unsetenv("PMI_RANK");
        ::unsetenv("SLURM_PROCID");
        abort_job(nullptr, "load", "x");
      },
      ::testing::ExitedWithCode(1), "^" + host + ":\\? load: x\n$");
}

}  // namespace
}  // namespace align2
