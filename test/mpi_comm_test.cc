// MpiComm under mpirun -np 2 and -np 3 (mpi_comm_test_np2 / _np3).
// Every test is run by every rank; collectives stay unconditional (see
// mpi_test_main.cc). Contributions differ per rank in length and content, some are
// empty, and roots are 0 and the last rank. The chunked (> INT_MAX) paths run
// with a tiny max_chunk_bytes instead of gigabytes of data.
#include <gtest/gtest.h>
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/launch.h"
#include "distributed/mpi_comm.h"
#include "distributed/nccl_comm.h"

namespace align2 {
namespace {

using Bytes = std::vector<std::uint8_t>;

// Deterministic content for rank r's contribution of `length` bytes.
Bytes pattern(int r, std::size_t length) {
  Bytes bytes(length);
  for (std::size_t i = 0; i < length; ++i) bytes[i] = static_cast<std::uint8_t>(r * 31 + i * 7 + 1);
  return bytes;
}

// Contribution lengths in bytes: rank 0 empty, others of different sizes.
std::size_t length_of(int r) { return r == 0 ? 0 : static_cast<std::size_t>(r * 13 + 5); }

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

TEST(MpiComm, RankSizeHostMatchWorld) {
  MpiComm comm;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.size(), world_size());
  EXPECT_GE(comm.size(), 2);
  EXPECT_FALSE(comm.host().empty());
  EXPECT_NE(comm.handle(), MPI_COMM_WORLD);  // a private duplicate
  EXPECT_EQ(comm.max_chunk_bytes(), MpiComm::kDefaultMaxChunkBytes);
}

TEST(MpiComm, Barrier) {
  MpiComm comm;
  for (int i = 0; i < 5; ++i) comm.barrier();
  // After a barrier, everyone still agrees on a collective result.
  std::int64_t one = 1;
  comm.allreduce(&one, 1, ReduceOp::sum);
  EXPECT_EQ(one, comm.size());
}

void check_broadcast(Comm& comm) {
  const int last = comm.size() - 1;
  for (int root : {0, last}) {
    for (std::size_t length : {std::size_t{0}, std::size_t{1}, std::size_t{1000}}) {
      // Non-roots start with junk of a different length, which must be replaced.
      Bytes bytes = comm.rank() == root ? pattern(root, length) : Bytes(77, 0xEE);
      comm.broadcast(bytes, root);
      EXPECT_EQ(bytes, pattern(root, length)) << "root " << root << " length " << length;
    }
  }
}

TEST(MpiComm, BroadcastFromZeroAndLastRootIncludingEmpty) {
  MpiComm comm;
  check_broadcast(comm);
}

void check_gatherv(Comm& comm) {
  const int last = comm.size() - 1;
  for (int root : {0, last}) {
    const Bytes mine = pattern(comm.rank(), length_of(comm.rank()));
    auto all = comm.gatherv(mine, root);
    if (comm.rank() == root) {
      ASSERT_EQ(all.size(), static_cast<std::size_t>(comm.size()));
      for (int r = 0; r < comm.size(); ++r) {
        EXPECT_EQ(all[r], pattern(r, length_of(r))) << "root " << root << " from rank " << r;
      }
    } else {
      EXPECT_TRUE(all.empty()) << "non-root " << comm.rank() << " got a result";
    }
    // Everyone empty.
    auto none = comm.gatherv(Bytes{}, root);
    if (comm.rank() == root) {
      ASSERT_EQ(none.size(), static_cast<std::size_t>(comm.size()));
      for (const auto& b : none) EXPECT_TRUE(b.empty());
    } else {
      EXPECT_TRUE(none.empty());
    }
    // Only the root empty.
    const Bytes only_others = comm.rank() == root ? Bytes{} : pattern(comm.rank(), 50);
    auto others = comm.gatherv(only_others, root);
    if (comm.rank() == root) {
      ASSERT_EQ(others.size(), static_cast<std::size_t>(comm.size()));
      for (int r = 0; r < comm.size(); ++r) {
        EXPECT_EQ(others[r], r == root ? Bytes{} : pattern(r, 50));
      }
    }
  }
}

TEST(MpiComm, GathervVariableAndEmptyContributions) {
  MpiComm comm;
  check_gatherv(comm);
  EXPECT_GT(comm.counters().gatherv_calls, 0u);
  EXPECT_EQ(comm.counters().p2p_chunks, 0u);
}

void check_allgatherv(Comm& comm) {
  const Bytes mine = pattern(comm.rank(), length_of(comm.rank()));
  auto all = comm.allgatherv(mine);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(all[r], pattern(r, length_of(r))) << "rank " << r;

  auto none = comm.allgatherv(Bytes{});
  ASSERT_EQ(none.size(), static_cast<std::size_t>(comm.size()));
  for (const auto& b : none) EXPECT_TRUE(b.empty());

  // Only the last rank contributes.
  const int last = comm.size() - 1;
  auto one = comm.allgatherv(comm.rank() == last ? pattern(last, 40) : Bytes{});
  ASSERT_EQ(one.size(), static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(one[r], r == last ? pattern(last, 40) : Bytes{});
}

TEST(MpiComm, AllgathervVariableAndEmptyContributions) {
  MpiComm comm;
  check_allgatherv(comm);
  EXPECT_GT(comm.counters().allgatherv_calls, 0u);
}

void check_allreduce(Comm& comm) {
  const int r = comm.rank();
  const int p = comm.size();
  // Three values per rank: r+0.5, -r, 100*r (and the same as float / int64).
  double sum_a = 0, sum_b = 0, sum_c = 0;
  for (int i = 0; i < p; ++i) {
    sum_a += i + 0.5;
    sum_b += -i;
    sum_c += 100.0 * i;
  }
  {
    std::vector<double> v = {r + 0.5, -1.0 * r, 100.0 * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::sum);
    EXPECT_EQ(v, (std::vector<double>{sum_a, sum_b, sum_c}));
    v = {r + 0.5, -1.0 * r, 100.0 * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::max);
    EXPECT_EQ(v, (std::vector<double>{p - 0.5, 0.0, 100.0 * (p - 1)}));
    v = {r + 0.5, -1.0 * r, 100.0 * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::min);
    EXPECT_EQ(v, (std::vector<double>{0.5, -1.0 * (p - 1), 0.0}));
  }
  {
    std::vector<float> v = {r + 0.5f, -1.0f * r, 100.0f * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::sum);
    EXPECT_EQ(v, (std::vector<float>{float(sum_a), float(sum_b), float(sum_c)}));
    v = {r + 0.5f, -1.0f * r, 100.0f * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::max);
    EXPECT_EQ(v, (std::vector<float>{p - 0.5f, 0.0f, 100.0f * (p - 1)}));
    v = {r + 0.5f, -1.0f * r, 100.0f * r};
    comm.allreduce(v.data(), v.size(), ReduceOp::min);
    EXPECT_EQ(v, (std::vector<float>{0.5f, -1.0f * (p - 1), 0.0f}));
  }
  {
    // Values beyond 2^32 to catch a 32-bit type slipping in.
    const std::int64_t big = std::int64_t{1} << 40;
    std::int64_t sum_big = 0, sum_neg = 0;
    for (int i = 0; i < p; ++i) {
      sum_big += big * (i + 1);
      sum_neg += -i;
    }
    std::vector<std::int64_t> v = {big * (r + 1), -std::int64_t{r}};
    comm.allreduce(v.data(), v.size(), ReduceOp::sum);
    EXPECT_EQ(v, (std::vector<std::int64_t>{sum_big, sum_neg}));
    v = {big * (r + 1), -std::int64_t{r}};
    comm.allreduce(v.data(), v.size(), ReduceOp::max);
    EXPECT_EQ(v, (std::vector<std::int64_t>{big * p, 0}));
    v = {big * (r + 1), -std::int64_t{r}};
    comm.allreduce(v.data(), v.size(), ReduceOp::min);
    EXPECT_EQ(v, (std::vector<std::int64_t>{big, -std::int64_t{p - 1}}));
  }
  // n == 0 is a no-op, also with null.
  comm.allreduce(static_cast<double*>(nullptr), 0, ReduceOp::sum);
}

TEST(MpiComm, AllreduceSumMaxMinAllTypes) {
  MpiComm comm;
  check_allreduce(comm);
}

// --- the chunked paths, forced with a 7-byte chunk

TEST(MpiComm, ChunkedBroadcast) {
  MpiComm comm(MPI_COMM_WORLD, 7);
  check_broadcast(comm);
  // 1 byte -> 1 chunk, 1000 bytes -> 143 chunks; twice (two roots).
  EXPECT_EQ(comm.counters().broadcast_chunks, 2u * (1 + 143));
}

TEST(MpiComm, ChunkedGatherv) {
  MpiComm comm(MPI_COMM_WORLD, 7);
  check_gatherv(comm);
  EXPECT_EQ(comm.counters().gatherv_calls, 0u);  // every total above was > 7 or 0
  EXPECT_GT(comm.counters().p2p_chunks, 0u);
}

TEST(MpiComm, ChunkedAllgatherv) {
  MpiComm comm(MPI_COMM_WORLD, 7);
  check_allgatherv(comm);
  EXPECT_EQ(comm.counters().allgatherv_calls, 0u);
  EXPECT_GT(comm.counters().broadcast_chunks, 0u);
}

TEST(MpiComm, ChunkedAllreduce) {
  MpiComm comm(MPI_COMM_WORLD, 7);  // smaller than one value: one value per call
  check_allreduce(comm);
  // 6 calls of 3 values (double, float) + 3 calls of 2 values (int64).
  EXPECT_EQ(comm.counters().allreduce_calls, 6u * 3 + 3u * 2);

  MpiComm two_doubles(MPI_COMM_WORLD, 16);
  std::vector<double> v(5, 1.0);
  two_doubles.allreduce(v.data(), v.size(), ReduceOp::sum);
  EXPECT_EQ(v, std::vector<double>(5, double(two_doubles.size())));
  EXPECT_EQ(two_doubles.counters().allreduce_calls, 3u);  // 2 + 2 + 1
}

TEST(MpiComm, TotalExactlyOneChunkUsesSingleCall) {
  // Every rank contributes 4 bytes; chunk = the exact total.
  const std::size_t total = 4 * static_cast<std::size_t>(world_size());
  MpiComm comm(MPI_COMM_WORLD, total);
  auto all = comm.allgatherv(pattern(comm.rank(), 4));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(all[r], pattern(r, 4));
  auto gathered = comm.gatherv(pattern(comm.rank(), 4), comm.size() - 1);
  if (comm.rank() == comm.size() - 1) {
    for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(gathered[r], pattern(r, 4));
  }
  EXPECT_EQ(comm.counters().allgatherv_calls, 1u);
  EXPECT_EQ(comm.counters().gatherv_calls, 1u);
  EXPECT_EQ(comm.counters().p2p_chunks, 0u);
}

TEST(MpiComm, ChunkedAndPlainAgreeOnMegabytes) {
  MpiComm plain;
  MpiComm chunked(MPI_COMM_WORLD, 65536 + 3);
  const Bytes mine = pattern(plain.rank(), 300000 + 12345 * static_cast<std::size_t>(plain.rank()));
  EXPECT_EQ(plain.allgatherv(mine), chunked.allgatherv(mine));
  const auto a = plain.gatherv(mine, 1);
  const auto b = chunked.gatherv(mine, 1);
  EXPECT_EQ(a, b);
  EXPECT_GT(chunked.counters().p2p_chunks, 0u);
}

TEST(MpiComm, LargeAllgathervGoesByBroadcastsIntoEachRanksBytes) {
  // Above kFlatAllgatherMaxBytes in all, no MPI_Allgatherv into a flat buffer: one broadcast per
  // rank straight into its vector (no cut, no second copy of every byte).
  MpiComm comm;
  const std::size_t each = MpiComm::kFlatAllgatherMaxBytes / std::size_t(comm.size()) + 4096;
  const Bytes mine = pattern(comm.rank(), each + 7 * std::size_t(comm.rank()));
  const auto all = comm.allgatherv(mine);
  ASSERT_EQ(all.size(), std::size_t(comm.size()));
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(all[r], pattern(r, each + 7 * std::size_t(r))) << "rank " << r;
  EXPECT_EQ(comm.counters().allgatherv_calls, 0u);
  EXPECT_EQ(comm.counters().broadcast_chunks, std::uint64_t(comm.size()));
}

// --- argument errors: thrown on every rank, before any communication

TEST(MpiComm, InvalidRootThrowsEverywhere) {
  MpiComm comm;
  Bytes bytes = {1};
  EXPECT_THROW(comm.broadcast(bytes, comm.size()), std::invalid_argument);
  EXPECT_THROW(comm.broadcast(bytes, -1), std::invalid_argument);
  EXPECT_THROW(comm.gatherv(bytes, comm.size()), std::invalid_argument);
  // Still usable afterwards.
  comm.barrier();
  check_broadcast(comm);
}

TEST(MpiComm, BadChunkSizesThrowEverywhere) {
  EXPECT_THROW(MpiComm(MPI_COMM_WORLD, 0), std::invalid_argument);
  EXPECT_THROW(MpiComm(MPI_COMM_WORLD, std::size_t{INT_MAX} + 1), std::invalid_argument);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_THROW(MpiComm(MPI_COMM_WORLD, rank == 0 ? 8 : 16), std::invalid_argument);
  MpiComm ok(MPI_COMM_WORLD, INT_MAX);
  ok.barrier();
}

TEST(MpiComm, SeveralCommunicatorsCoexist) {
  MpiComm a;
  MpiComm b(MPI_COMM_WORLD, 5);
  const int last = a.size() - 1;
  Bytes from_a = a.rank() == 0 ? pattern(0, 20) : Bytes{};
  Bytes from_b = b.rank() == last ? pattern(last, 20) : Bytes{};
  a.broadcast(from_a, 0);
  b.broadcast(from_b, last);
  EXPECT_EQ(from_a, pattern(0, 20));
  EXPECT_EQ(from_b, pattern(last, 20));
}

// --- launch.h under a real mpirun

// A job whose ranks disagree on GPU or CPU is refused on every rank, naming the counts, before
// any NCCL setup (no GPU is needed for this).
TEST(MpiDataComm, MixedGpuAndCpuRanksAreRefusedEverywhere) {
  MpiComm host;
  const int device = host.rank() == 0 ? 0 : -1;
  try {
    DataComm data(host, device);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("1 of " + std::to_string(host.size()) + " ranks run on a GPU"),
              std::string::npos)
        << e.what();
  }
  DataComm cpu(host, -1);  // all on the CPU: MPI carries the data
  EXPECT_FALSE(cpu.uses_nccl());
  EXPECT_EQ(&cpu.comm(), &host);
}

TEST(MpiLaunch, WorldCheckPassesUnderMpirun) {
  EXPECT_NO_THROW(check_world());
}

TEST(MpiLaunch, LocalRankIsRankOnOneMachine) {
  // mpirun sets OMPI_COMM_WORLD_LOCAL_RANK; all ranks of this test share one host.
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(local_rank(), rank);
}

TEST(MpiLaunch, SecondSessionIsRefused) {
  EXPECT_THROW(MpiSession(nullptr, nullptr), std::logic_error);
}

}  // namespace
}  // namespace align2
