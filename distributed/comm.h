// The host communicator: the few collectives align2 uses, over bytes and numbers in
// host memory. Two implementations: MpiComm (distributed/mpi_comm.h) and LocalComm
// (below, size 1, for tests and single-process runs).
//
// Rules for every collective below: it is called by EVERY rank of the communicator,
// in the same order on every rank, and it blocks until this rank's part is done
// (a rank may return before others do). Buffers are host memory. Nothing here is
// thread-safe: one thread per rank calls it.
//
// A `root` outside [0, size()) throws std::invalid_argument on every rank (before
// any communication). Other failures throw std::runtime_error; a failure on one
// rank can leave the others blocked in the collective, so callers should treat
// any exception from here as fatal for the job (see abort_job in launch.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace align2 {

enum class ReduceOp { sum, max, min };

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Host name of this rank's machine, for error messages.
  virtual std::string host() const = 0;

  // All ranks wait until all have arrived.
  virtual void barrier() = 0;

  // Root's `bytes` are copied to every rank; on other ranks `bytes` is replaced
  // (resized to root's length). Any length, also above 2 GiB.
  virtual void broadcast(std::vector<std::uint8_t>& bytes, int root) = 0;

  // Each rank contributes `mine` (any length, may differ per rank and be empty).
  // On root: the result has size() entries, entry r = rank r's bytes.
  // On other ranks: the result is empty.
  virtual std::vector<std::vector<std::uint8_t>> gatherv(const std::vector<std::uint8_t>& mine,
                                                         int root) = 0;

  // Like gatherv, but every rank receives all size() contributions.
  virtual std::vector<std::vector<std::uint8_t>> allgatherv(
      const std::vector<std::uint8_t>& mine) = 0;

  // Element-wise reduction of `n` values in place (`values` points to n elements of
  // host memory; may be null when n == 0); every rank passes the same n and ends
  // with the same result.
  virtual void allreduce(double* values, std::size_t n, ReduceOp op) = 0;
  virtual void allreduce(float* values, std::size_t n, ReduceOp op) = 0;
  virtual void allreduce(std::int64_t* values, std::size_t n, ReduceOp op) = 0;
};

// Size-1 communicator: every collective is a local copy or no-op. The only valid
// root is 0.
class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string host() const override;
  void barrier() override {}
  void broadcast(std::vector<std::uint8_t>& bytes, int root) override;
  std::vector<std::vector<std::uint8_t>> gatherv(const std::vector<std::uint8_t>& mine,
                                                 int root) override;
  std::vector<std::vector<std::uint8_t>> allgatherv(const std::vector<std::uint8_t>& mine) override;
  void allreduce(double* values, std::size_t n, ReduceOp op) override;
  void allreduce(float* values, std::size_t n, ReduceOp op) override;
  void allreduce(std::int64_t* values, std::size_t n, ReduceOp op) override;
};

}  // namespace align2
