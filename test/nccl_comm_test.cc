// NcclComm on real GPUs, under mpirun -np 1 and -np 2 (nccl_comm_test_np1/_np2,
// label gpu). Skips - on every rank together - when this machine has no CUDA
// device, or fewer devices than ranks on it (NCCL needs one GPU per rank).
// Buffers: host vectors of floats are copied to and from device buffers of the
// same length; all values are small integers, exact in float.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/launch.h"
#include "distributed/mpi_comm.h"
#include "distributed/nccl_comm.h"

namespace align2 {
namespace {

// `count` floats of device memory on the current device; freed on destruction.
class DeviceFloats {
 public:
  explicit DeviceFloats(std::size_t count) : count_(count) {
    if (count_ > 0) {
      const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&data_), count_ * sizeof(float));
      if (e != cudaSuccess) throw std::runtime_error(std::string("cudaMalloc: ") + cudaGetErrorString(e));
    }
  }
  ~DeviceFloats() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;

  float* get() const { return data_; }
  void upload(const std::vector<float>& host) {
    ASSERT_EQ(host.size(), count_);
    ASSERT_EQ(cudaMemcpy(data_, host.data(), count_ * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() const {
    std::vector<float> host(count_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, count_ * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  float* data_ = nullptr;
  std::size_t count_ = 0;
};

class NcclCommTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = std::make_unique<MpiComm>();
    const int devices = cuda_device_count();
    const int local = local_rank();
    // All ranks must skip together, or the others would wait in NcclComm's setup.
    std::int64_t usable = (devices > 0 && local < devices) ? 1 : 0;
    host_->allreduce(&usable, 1, ReduceOp::min);
    if (usable == 0) {
      GTEST_SKIP() << "needs a CUDA device per rank on each machine; this rank sees " << devices
                   << " device(s) and has local rank " << local;
    }
    nccl_ = std::make_unique<NcclComm>(*host_, local);
  }

  std::unique_ptr<MpiComm> host_;
  std::unique_ptr<NcclComm> nccl_;
};

TEST_F(NcclCommTest, MatchesHostComm) {
  EXPECT_EQ(nccl_->rank(), host_->rank());
  EXPECT_EQ(nccl_->size(), host_->size());
  EXPECT_GE(nccl_->device(), 0);
  EXPECT_NE(nccl_->stream(), nullptr);
}

// Rank r's i-th value: r * 1000 + i (exact in float for the sizes below).
std::vector<float> rank_values(int r, std::size_t count) {
  std::vector<float> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>(r * 1000 + static_cast<int>(i % 1000));
  return v;
}

TEST_F(NcclCommTest, Allgather) {
  const int p = nccl_->size();
  for (std::size_t count : {std::size_t{1}, std::size_t{1000}, std::size_t{1} << 20}) {
    DeviceFloats send(count);
    DeviceFloats recv(count * p);
    send.upload(rank_values(nccl_->rank(), count));
    nccl_->allgather(send.get(), recv.get(), count);
    nccl_->synchronize();
    const std::vector<float> got = recv.download();
    for (int r = 0; r < p; ++r) {
      const std::vector<float> want = rank_values(r, count);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * count))
          << "block of rank " << r << ", count " << count;
    }
  }
}

TEST_F(NcclCommTest, AllgatherInPlaceAndEmpty) {
  const int p = nccl_->size();
  const std::size_t count = 257;
  DeviceFloats buffer(count * p);
  std::vector<float> host(count * p, -1.0f);
  const std::vector<float> mine = rank_values(nccl_->rank(), count);
  std::copy(mine.begin(), mine.end(), host.begin() + nccl_->rank() * count);
  buffer.upload(host);
  nccl_->allgather(buffer.get() + nccl_->rank() * count, buffer.get(), count);
  nccl_->allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);  // no-op
  nccl_->synchronize();
  const std::vector<float> got = buffer.download();
  for (int r = 0; r < p; ++r) {
    const std::vector<float> want = rank_values(r, count);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * count)) << "rank " << r;
  }
}

TEST_F(NcclCommTest, AllreduceSumMaxMin) {
  const int p = nccl_->size();
  const int r = nccl_->rank();
  const std::size_t n = 4096;
  // Value i on rank r: (r + 1) * (i % 100) - r.
  auto values = [&](int rank) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>((rank + 1) * static_cast<int>(i % 100) - rank);
    return v;
  };
  struct Case {
    ReduceOp op;
    const char* name;
  };
  for (Case c : {Case{ReduceOp::sum, "sum"}, Case{ReduceOp::max, "max"}, Case{ReduceOp::min, "min"}}) {
    DeviceFloats data(n);
    data.upload(values(r));
    nccl_->allreduce(data.get(), n, c.op);
    nccl_->allreduce(data.get(), 0, c.op);  // no-op
    nccl_->synchronize();
    const std::vector<float> got = data.download();
    std::vector<float> want = values(0);
    for (int q = 1; q < p; ++q) {
      const std::vector<float> other = values(q);
      for (std::size_t i = 0; i < n; ++i) {
        if (c.op == ReduceOp::sum) want[i] += other[i];
        if (c.op == ReduceOp::max) want[i] = std::max(want[i], other[i]);
        if (c.op == ReduceOp::min) want[i] = std::min(want[i], other[i]);
      }
    }
    EXPECT_EQ(got, want) << c.name;
  }
}

// The data communicator of GPU ranks: host-memory collectives carried by NCCL give what the
// MPI communicator gives.
TEST_F(NcclCommTest, StagedCommMatchesMpi) {
  std::unique_ptr<Comm> staged = make_nccl_staged_comm(*host_, *nccl_);
  const int r = host_->rank(), p = host_->size();
  std::vector<std::uint8_t> mine(std::size_t(3 * r + 1), std::uint8_t(r + 7));  // lengths differ per rank
  EXPECT_EQ(staged->allgatherv(mine), host_->allgatherv(mine));
  EXPECT_EQ(staged->gatherv(mine, p - 1), host_->gatherv(mine, p - 1));
  std::vector<std::uint8_t> a = mine, b = mine;
  staged->broadcast(a, 0);
  host_->broadcast(b, 0);
  EXPECT_EQ(a, b);
  double d[2] = {0.5 + r, -1.0 * r}, e[2] = {0.5 + r, -1.0 * r};
  staged->allreduce(d, 2, ReduceOp::sum);
  host_->allreduce(e, 2, ReduceOp::sum);
  EXPECT_EQ(d[0], e[0]);
  EXPECT_EQ(d[1], e[1]);
  std::int64_t i = r, j = r;
  staged->allreduce(&i, 1, ReduceOp::max);
  host_->allreduce(&j, 1, ReduceOp::max);
  EXPECT_EQ(i, j);
}

TEST_F(NcclCommTest, DataCommOnGpuRanksUsesNccl) {
  DataComm data(*host_, nccl_->device());
  EXPECT_TRUE(data.uses_nccl());
  EXPECT_NE(data.device_comm(), nullptr);
  EXPECT_EQ(data.comm().size(), host_->size());
}

TEST(NcclCommArgs, NegativeDeviceThrows) {
  // Argument check before any communication; fine even without a GPU.
  MpiComm host;
  EXPECT_THROW(NcclComm(host, -1), std::invalid_argument);
}

}  // namespace
}  // namespace align2
