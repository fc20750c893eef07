// Compiled only in CUDA builds (distributed/CMakeLists.txt); the CPU-only
// cuda_device_count() lives in launch.cc.
#include "distributed/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

namespace align2 {

namespace {

// The forward declarations in nccl_comm.h must name the very types the SDK uses.
static_assert(std::is_same<ncclComm_t, ncclComm*>::value, "ncclComm_t is not ncclComm*");
static_assert(std::is_same<cudaStream_t, CUstream_st*>::value, "cudaStream_t is not CUstream_st*");

std::string cuda_error_text(cudaError_t e, const char* what) {
  return std::string("NcclComm: ") + what + " failed: " + cudaGetErrorName(e) + ": " +
         cudaGetErrorString(e);
}

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(cuda_error_text(e, what));
}

std::string nccl_error_text(ncclResult_t r, const char* what, ncclComm_t comm) {
  std::string text = std::string("NcclComm: ") + what + " failed: " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') text += std::string(" (") + last + ")";
  return text;
}

void check_nccl(ncclResult_t r, const char* what, ncclComm_t comm) {
  if (r != ncclSuccess) throw std::runtime_error(nccl_error_text(r, what, comm));
}

ncclRedOp_t to_nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  throw std::invalid_argument("NcclComm: unknown ReduceOp");
}

// Shares one rank's failure with all ranks of `host` (collective): every rank
// passes its own error text ("" = fine); if any rank failed, every rank throws -
// the failing one with its own text, the others naming that some rank failed.
void agree_or_throw(Comm& host, const std::string& my_error, const char* step) {
  std::int64_t failed = my_error.empty() ? 0 : 1;
  host.allreduce(&failed, 1, ReduceOp::max);
  if (failed == 0) return;
  if (!my_error.empty()) throw std::runtime_error(my_error);
  throw std::runtime_error(std::string("NcclComm: ") + step + " failed on another rank");
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the error so later CUDA calls do not report it
    return 0;
  }
  return count > 0 ? count : 0;
}

std::uint64_t cuda_free_bytes(int device) {
  int previous = 0;
  if (device < 0 || cudaGetDevice(&previous) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  std::size_t free = 0, total = 0;
  const bool ok = cudaSetDevice(device) == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess;
  cudaGetLastError();
  cudaSetDevice(previous);
  return ok ? std::uint64_t(free) : 0;
}

NcclComm::NcclComm(Comm& host, int device)
    : rank_(host.rank()), size_(host.size()), device_(device) {
  if (device < 0) {
    throw std::invalid_argument("NcclComm: device " + std::to_string(device) +
                                " is negative (no GPU for this rank?)");
  }
  try {
    // 1. This rank's device and stream (local), then agree that all ranks got theirs.
    std::string error;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
      error = cuda_error_text(e, ("cudaSetDevice(" + std::to_string(device) + ")").c_str());
    } else {
      cudaStream_t stream = nullptr;
      e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      if (e != cudaSuccess) {
        error = cuda_error_text(e, "cudaStreamCreateWithFlags");
      } else {
        stream_ = stream;
      }
    }
    agree_or_throw(host, error, "cudaSetDevice/cudaStreamCreate");

    // 2. Rank 0 makes the unique id and broadcasts its bytes (sizeof(ncclUniqueId)
    //    bytes, 128 today) over the host communicator; an empty broadcast means rank
    //    0 failed, and every rank throws.
    std::vector<std::uint8_t> id_bytes;
    std::string id_error;
    if (rank_ == 0) {
      ncclUniqueId id;
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r == ncclSuccess) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(&id);
        id_bytes.assign(p, p + sizeof(id));
      } else {
        id_error = nccl_error_text(r, "ncclGetUniqueId", nullptr);
      }
    }
    host.broadcast(id_bytes, 0);
    if (id_bytes.size() != sizeof(ncclUniqueId)) {
      if (!id_error.empty()) throw std::runtime_error(id_error);
      throw std::runtime_error("NcclComm: rank 0 could not create the NCCL unique id (got " +
                               std::to_string(id_bytes.size()) + " bytes)");
    }
    ncclUniqueId id;
    std::memcpy(&id, id_bytes.data(), sizeof(id));

    // 3. Collective init (blocks until all ranks joined), then agree it worked
    //    everywhere, so a rank whose init failed does not leave the others waiting
    //    at their first collective.
    ncclComm_t comm = nullptr;
    const ncclResult_t r = ncclCommInitRank(&comm, size_, id, rank_);
    std::string init_error;
    if (r != ncclSuccess) {
      init_error = nccl_error_text(r, "ncclCommInitRank", nullptr);
    } else {
      comm_ = comm;
    }
    agree_or_throw(host, init_error, "ncclCommInitRank");
  } catch (...) {
    // The destructor does not run for a constructor that throws: release here.
    if (comm_ != nullptr) ncclCommAbort(comm_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    comm_ = nullptr;
    stream_ = nullptr;
    throw;
  }
}

NcclComm::~NcclComm() {
  cudaSetDevice(device_);
  if (comm_ != nullptr) {
    if (std::uncaught_exceptions() > 0) {
      // Unwinding after an error: peers may be gone or stuck; do not wait for them.
      ncclCommAbort(comm_);
    } else {
      cudaStreamSynchronize(stream_);
      ncclCommDestroy(comm_);
    }
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void NcclComm::allgather(const float* send, float* recv, std::size_t count_per_rank) {
  if (count_per_rank == 0) return;
  if (send == nullptr || recv == nullptr) {
    throw std::invalid_argument("NcclComm::allgather: null device buffer");
  }
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclAllGather(send, recv, count_per_rank, ncclFloat, comm_, stream_), "ncclAllGather",
             comm_);
}

namespace {

template <typename T>
ncclDataType_t nccl_type();
template <>
ncclDataType_t nccl_type<float>() { return ncclFloat; }
template <>
ncclDataType_t nccl_type<double>() { return ncclDouble; }
template <>
ncclDataType_t nccl_type<std::int64_t>() { return ncclInt64; }

}  // namespace

template <typename T>
void NcclComm::reduce_in_place(T* data, std::size_t n, ReduceOp op) {
  if (n == 0) return;
  if (data == nullptr) throw std::invalid_argument("NcclComm::allreduce: null device buffer");
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclAllReduce(data, data, n, nccl_type<T>(), to_nccl_op(op), comm_, stream_), "ncclAllReduce", comm_);
}

void NcclComm::allreduce(float* data, std::size_t n, ReduceOp op) { reduce_in_place(data, n, op); }
void NcclComm::allreduce(double* data, std::size_t n, ReduceOp op) { reduce_in_place(data, n, op); }
void NcclComm::allreduce(std::int64_t* data, std::size_t n, ReduceOp op) { reduce_in_place(data, n, op); }

void NcclComm::allreduce_now(float* data, std::size_t n, ReduceOp op) {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  allreduce(data, n, op);
  synchronize();
}

void NcclComm::broadcast(std::uint8_t* data, std::size_t bytes, int root) {
  if (bytes == 0) return;
  if (data == nullptr) throw std::invalid_argument("NcclComm::broadcast: null device buffer");
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast", comm_);
}

void NcclComm::allgather(const std::uint8_t* send, std::uint8_t* recv, std::size_t bytes_per_rank) {
  if (bytes_per_rank == 0) return;
  if (send == nullptr || recv == nullptr) throw std::invalid_argument("NcclComm::allgather: null device buffer");
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclAllGather(send, recv, bytes_per_rank, ncclUint8, comm_, stream_), "ncclAllGather", comm_);
}

void NcclComm::synchronize() {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  ncclResult_t async = ncclSuccess;
  check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", comm_);
  check_nccl(async, "an asynchronous NCCL operation", comm_);
}

namespace {

// One cudaMalloc'd buffer of `bytes` bytes on the current device; freed on destruction.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) {
    if (bytes) check_cuda(cudaMalloc(&data_, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::uint8_t* get() const { return static_cast<std::uint8_t*>(data_); }

 private:
  void* data_ = nullptr;
};

void to_device(void* device, const void* host, std::size_t bytes) {
  if (bytes) check_cuda(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
}
void to_host(void* host, const void* device, std::size_t bytes) {
  if (bytes) check_cuda(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}

class NcclStagedComm final : public Comm {
 public:
  NcclStagedComm(Comm& host, NcclComm& nccl) : host_(host), nccl_(nccl) {}
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string host() const override { return host_.host(); }
  void barrier() override { host_.barrier(); }

  void broadcast(std::vector<std::uint8_t>& bytes, int root) override {
    check_root(root);
    std::int64_t length = rank() == root ? std::int64_t(bytes.size()) : 0;
    host_.allreduce(&length, 1, ReduceOp::max);  // root's length, to every rank
    bytes.resize(std::size_t(length));
    DeviceBuffer buffer(bytes.size());
    if (rank() == root) to_device(buffer.get(), bytes.data(), bytes.size());
    nccl_.broadcast(buffer.get(), bytes.size(), root);
    nccl_.synchronize();
    to_host(bytes.data(), buffer.get(), bytes.size());
  }

  std::vector<std::vector<std::uint8_t>> gatherv(const std::vector<std::uint8_t>& mine, int root) override {
    check_root(root);
    std::vector<std::vector<std::uint8_t>> all = allgatherv(mine);
    if (rank() != root) all.clear();
    return all;
  }

  std::vector<std::vector<std::uint8_t>> allgatherv(const std::vector<std::uint8_t>& mine) override {
    // Lengths [size()] int64 through the host; payloads padded to the longest through NCCL.
    std::vector<std::int64_t> lengths(std::size_t(size()), 0);
    lengths[std::size_t(rank())] = std::int64_t(mine.size());
    host_.allreduce(lengths.data(), lengths.size(), ReduceOp::sum);
    const std::size_t longest = std::size_t(*std::max_element(lengths.begin(), lengths.end()));
    DeviceBuffer send(longest), recv(longest * std::size_t(size()));
    if (longest) check_cuda(cudaMemset(send.get(), 0, longest), "cudaMemset");
    to_device(send.get(), mine.data(), mine.size());
    nccl_.allgather(send.get(), recv.get(), longest);
    nccl_.synchronize();
    std::vector<std::uint8_t> flat(longest * std::size_t(size()));  // [size(), longest] bytes
    to_host(flat.data(), recv.get(), flat.size());
    std::vector<std::vector<std::uint8_t>> all(static_cast<std::size_t>(size()));
    for (std::size_t r = 0; r < all.size(); ++r)
      all[r].assign(flat.begin() + std::ptrdiff_t(r * longest),
                    flat.begin() + std::ptrdiff_t(r * longest + std::size_t(lengths[r])));
    return all;
  }

  void allreduce(double* values, std::size_t n, ReduceOp op) override { reduce(values, n, op); }
  void allreduce(float* values, std::size_t n, ReduceOp op) override { reduce(values, n, op); }
  void allreduce(std::int64_t* values, std::size_t n, ReduceOp op) override { reduce(values, n, op); }

 private:
  void check_root(int root) const {
    if (root < 0 || root >= size())
      throw std::invalid_argument("NcclStagedComm: root " + std::to_string(root) + " outside [0, " +
                                  std::to_string(size()) + ")");
  }
  template <typename T>
  void reduce(T* values, std::size_t n, ReduceOp op) {
    if (n == 0) return;
    DeviceBuffer buffer(n * sizeof(T));
    to_device(buffer.get(), values, n * sizeof(T));
    nccl_.allreduce(reinterpret_cast<T*>(buffer.get()), n, op);
    nccl_.synchronize();
    to_host(values, buffer.get(), n * sizeof(T));
  }

  Comm& host_;
  NcclComm& nccl_;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_staged_comm(Comm& host, NcclComm& nccl) {
  return std::make_unique<NcclStagedComm>(host, nccl);
}

}  // namespace align2
