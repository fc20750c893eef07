// MpiComm: the host communicator (distributed/comm.h) over MPI.
//
// Owns a private duplicate of an MPI communicator (MPI_COMM_WORLD by default), so
// align2's traffic never matches anyone else's messages. The duplicate has
// MPI_ERRORS_RETURN set: every MPI failure becomes a std::runtime_error carrying
// MPI's error string, instead of MPI's default "abort the whole job".
//
// Messages of any size: MPI counts are int, so everything above `max_chunk_bytes`
// (1 GiB by default, never more than INT_MAX) travels in pieces of at most that
// many bytes.
//   broadcast  - length (uint64) first, then the bytes in chunks.
//   gatherv    - every rank learns every contribution's length (MPI_Allgather of
//                uint64, so all ranks take the same path); if the total fits in one
//                chunk, one MPI_Gatherv; else each rank sends its bytes to root in
//                chunks (MPI_Send/MPI_Recv, root receives in rank order).
//   allgatherv - lengths with MPI_Allgather; total fits in one chunk: one
//                MPI_Allgatherv; else every rank's contribution is broadcast in
//                chunks from its owner (same bytes on the wire as gatherv-to-0 plus
//                broadcast, minus the gather).
//   allreduce  - MPI_Allreduce in place, at most max_chunk_bytes of values per call.
//
// The MPI library must be initialised (MpiSession in launch.h, or MPI_Init_thread
// with at least MPI_THREAD_FUNNELED) before an MpiComm is built, and the MpiComm
// must be destroyed before MPI_Finalize.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "distributed/comm.h"

namespace align2 {

class MpiComm final : public Comm {
 public:
  static constexpr std::size_t kDefaultMaxChunkBytes = std::size_t{1} << 30;  // 1 GiB
  // allgatherv's totals above this go by one (chunked) broadcast per rank, not MPI_Allgatherv.
  static constexpr std::size_t kFlatAllgatherMaxBytes = std::size_t{64} << 20;  // 64 MiB

  // How many pieces this rank has moved through each chunked path; lets tests see
  // that a path was taken. Counts MPI calls, not bytes.
  struct Counters {
    std::uint64_t broadcast_chunks = 0;  // MPI_Bcast calls carrying payload bytes
    std::uint64_t p2p_chunks = 0;        // MPI_Send or MPI_Recv calls in gatherv's chunked path
    std::uint64_t gatherv_calls = 0;     // MPI_Gatherv calls (the path for small totals)
    std::uint64_t allgatherv_calls = 0;  // MPI_Allgatherv calls (the path for small totals)
    std::uint64_t allreduce_calls = 0;   // MPI_Allreduce calls carrying values
  };

  // Collective over `parent`: every rank of it constructs together. Duplicates
  // `parent` (MPI_Comm_dup) and sets MPI_ERRORS_RETURN on the duplicate.
  // `max_chunk_bytes`: largest payload of one MPI call, in bytes; 1..INT_MAX, and
  // the same on every rank (checked here with one MPI_Allreduce; a mismatch or a
  // bad value throws std::invalid_argument on every rank). Lower it in tests to
  // exercise the chunked paths with small data.
  explicit MpiComm(MPI_Comm parent = MPI_COMM_WORLD,
                   std::size_t max_chunk_bytes = kDefaultMaxChunkBytes);
  // Frees the duplicate (MPI_Comm_free) unless MPI is already finalised.
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_; }

  void barrier() override;
  void broadcast(std::vector<std::uint8_t>& bytes, int root) override;
  std::vector<std::vector<std::uint8_t>> gatherv(const std::vector<std::uint8_t>& mine,
                                                 int root) override;
  std::vector<std::vector<std::uint8_t>> allgatherv(const std::vector<std::uint8_t>& mine) override;
  void allreduce(double* values, std::size_t n, ReduceOp op) override;
  void allreduce(float* values, std::size_t n, ReduceOp op) override;
  void allreduce(std::int64_t* values, std::size_t n, ReduceOp op) override;

  // The owned duplicate, for code that must call MPI directly; stays owned here.
  MPI_Comm handle() const { return comm_; }
  std::size_t max_chunk_bytes() const { return max_chunk_bytes_; }
  const Counters& counters() const { return counters_; }

 private:
  // Throws std::runtime_error naming `what`, this rank and MPI's error string
  // when rc != MPI_SUCCESS.
  void check(int rc, const char* what) const;
  void check_root(int root, const char* what) const;
  // Chunked MPI_Bcast of `n` bytes at `data` (host memory; root's bytes are read,
  // others' written) from `root`. Every rank passes the same n.
  void broadcast_bytes(std::uint8_t* data, std::uint64_t n, int root);
  // Lengths in bytes of every rank's contribution: size() entries, on every rank.
  std::vector<std::uint64_t> all_lengths(std::uint64_t mine);
  // Shared body of the three typed allreduce overloads: `values` holds n elements
  // of `elem_bytes` bytes each, MPI type `type`.
  void allreduce_values(void* values, std::size_t n, std::size_t elem_bytes, MPI_Datatype type,
                        ReduceOp op);

  MPI_Comm comm_ = MPI_COMM_NULL;  // owned duplicate
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::size_t max_chunk_bytes_ = kDefaultMaxChunkBytes;
  Counters counters_;
};

}  // namespace align2
