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

TEST(Launch, DeviceIndex) {
  EXPECT_EQ(device_index(0, 0), -1);
  EXPECT_EQ(device_index(5, 0), -1);
  EXPECT_EQ(device_index(0, 4), 0);
  EXPECT_EQ(device_index(3, 4), 3);
  EXPECT_EQ(device_index(5, 4), 1);
  EXPECT_EQ(device_index(7, 1), 0);
  EXPECT_THROW(device_index(-1, 4), std::invalid_argument);
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
