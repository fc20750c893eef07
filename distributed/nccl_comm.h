// NcclComm: the device communicator. Float collectives over GPU memory via NCCL,
// bootstrapped through the host communicator (distributed/comm.h).
//
// NcclComm exists only in CUDA builds (ALIGN2_HAVE_CUDA, set by cmake/cuda.cmake
// on align2_distributed and everything linking it); cuda_device_count() exists in
// every build and answers 0 in CPU-only builds.
//
// nccl.h and cuda_runtime.h stay out of this header: the two handles are held as
// pointers to NCCL's and CUDA's own opaque structs, declared below (ncclComm_t is
// `ncclComm*`, cudaStream_t is `CUstream_st*`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "distributed/comm.h"

#if defined(ALIGN2_HAVE_CUDA)
struct ncclComm;    // NCCL's communicator; ncclComm_t == ncclComm*
struct CUstream_st;  // CUDA's stream; cudaStream_t == CUstream_st*
#endif

namespace align2 {

// Number of CUDA devices this process can use. 0 when the build has no CUDA, when
// there is no driver or no GPU, or on any CUDA error (the error is cleared). Never
// throws. Not collective.
int cuda_device_count();

// Free bytes on CUDA device `device` (cudaMemGetInfo), or 0 when unknown (no CUDA build, no
// such device, any CUDA error, cleared). Never throws. Not collective.
std::uint64_t cuda_free_bytes(int device);

class NcclComm;

// The communicator a job's data travels through (score gathers, broadcasts, reductions):
// ranks on CPUs use the host communicator (MPI); ranks on GPUs use NCCL, through an
// NcclStagedComm (below). Owns the NCCL communicator when there is one.
class DataComm {
 public:
  // Collective over `host`. `device`: this rank's CUDA device, or -1 for the CPU. Every rank
  // must pass a GPU or every rank -1: a mix throws std::runtime_error on every rank (naming
  // how many ranks have GPUs), as does a GPU in a build without CUDA or NcclComm's setup
  // failing (every rank throws together).
  DataComm(Comm& host, int device);
  ~DataComm();
  DataComm(const DataComm&) = delete;
  DataComm& operator=(const DataComm&) = delete;

  Comm& comm() { return staged_ ? *staged_ : host_; }
  bool uses_nccl() const { return staged_ != nullptr; }
  // The device communicator, for collectives over device memory (train-reward's gradient
  // all-reduce); null on CPU ranks.
  NcclComm* device_comm() { return nccl_.get(); }

 private:
  Comm& host_;
  std::unique_ptr<NcclComm> nccl_;
  std::unique_ptr<Comm> staged_;
};

#if defined(ALIGN2_HAVE_CUDA)

// Owns one NCCL communicator spanning the ranks of a host Comm (same ranks, same
// order) and one CUDA stream (non-blocking w.r.t. the legacy default stream) on
// which every collective is enqueued. One GPU per rank: two ranks of one
// NcclComm must not share a device (NCCL refuses that).
//
// Like Comm, every method marked collective is called by every rank, in the same
// order, from the one thread that drives MPI and CUDA for this rank.
class NcclComm {
 public:
  // Collective over `host` (uses it for a broadcast and two tiny allreduces).
  // Every rank: cudaSetDevice(device), then rank 0 creates the NCCL unique id
  // (ncclGetUniqueId) and broadcasts its bytes over `host`, then every rank
  // calls ncclCommInitRank(host.size(), id, host.rank()) and creates the stream.
  // `device` is this rank's CUDA device index (see choose_device in launch.h);
  // negative throws std::invalid_argument. Failures throw std::runtime_error with
  // cudaGetErrorString / ncclGetErrorString text; a failure before the NCCL init
  // (id creation, cudaSetDevice) is shared over `host` so every rank throws rather
  // than some hanging. Blocks until the communicator is up on every rank.
  NcclComm(Comm& host, int device);
  // Destroy on every rank, in the same order relative to other collectives:
  // waits for this rank's queued work on the stream, then ncclCommDestroy (which
  // may synchronise with the other ranks) and cudaStreamDestroy. While an
  // exception unwinds the stack it uses ncclCommAbort instead (never waits for
  // peers). Errors are swallowed (destructors do not throw).
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  // The stream all collectives are enqueued on; use it (or synchronize()) to order
  // kernels that produce inputs or consume results. Owned here.
  CUstream_st* stream() const { return stream_; }

  // Collective. `send`: count_per_rank floats in DEVICE memory of this rank's
  // device. `recv`: size() * count_per_rank floats in device memory; block r
  // (floats [r*count_per_rank, (r+1)*count_per_rank)) receives rank r's `send`.
  // `send` may alias block rank() of `recv` (NCCL's in-place form). Every rank
  // passes the same count_per_rank; 0 is a no-op. Does NOT block: the operation
  // is enqueued on stream(); buffers must stay alive and untouched by other
  // streams until synchronize() (or a later event on stream()) says it is done.
  void allgather(const float* send, float* recv, std::size_t count_per_rank);

  // Collective. Element-wise reduction in place of `n` floats in DEVICE memory;
  // every rank passes the same n and, once done, holds the same result. n == 0 is
  // a no-op. Does NOT block: enqueued on stream(), done after synchronize().
  void allreduce(float* data, std::size_t n, ReduceOp op);
  // The same for doubles and 64-bit integers.
  void allreduce(double* data, std::size_t n, ReduceOp op);
  void allreduce(std::int64_t* data, std::size_t n, ReduceOp op);

  // Collective. `bytes` bytes in DEVICE memory: root's are copied into every rank's buffer.
  // Does NOT block (as above).
  void broadcast(std::uint8_t* data, std::size_t bytes, int root);
  // Collective. `send`: bytes_per_rank bytes, `recv`: size() * bytes_per_rank bytes, both in
  // DEVICE memory; block r receives rank r's `send`. Does NOT block (as above).
  void allgather(const std::uint8_t* send, std::uint8_t* recv, std::size_t bytes_per_rank);

  // Collective and blocking: waits for all work on this rank's device (every stream, so that
  // kernels ATen enqueued on its own stream have written `data`), reduces `n` floats of
  // DEVICE memory in place, and waits for the result.
  void allreduce_now(float* data, std::size_t n, ReduceOp op);

  // Not collective. Blocks the calling host thread until everything enqueued on
  // stream() so far has finished on this rank; throws std::runtime_error for a
  // CUDA error or an asynchronous NCCL error (ncclCommGetAsyncError).
  void synchronize();

 private:
  template <typename T>
  void reduce_in_place(T* data, std::size_t n, ReduceOp op);

  ncclComm* comm_ = nullptr;      // owned; ncclComm_t
  CUstream_st* stream_ = nullptr;  // owned; cudaStream_t
  int rank_ = 0;
  int size_ = 1;
  int device_ = -1;
};

// Host-memory collectives carried by NCCL: the Comm interface (distributed/comm.h, its rules
// unchanged: every rank calls, host buffers) over `nccl`, each call staging its bytes through
// a buffer on the rank's GPU. Lengths and barriers go through `host`; payloads through NCCL.
// gatherv is an allgather of the longest contribution (NCCL has no gatherv). Both
// communicators must outlive the result.
std::unique_ptr<Comm> make_nccl_staged_comm(Comm& host, NcclComm& nccl);

#endif  // ALIGN2_HAVE_CUDA

}  // namespace align2
