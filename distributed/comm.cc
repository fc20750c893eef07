#include "distributed/comm.h"

#include <unistd.h>

#include <climits>
#include <stdexcept>
#include <string>

namespace align2 {

namespace {

void require_root_zero(int root, const char* what) {
  if (root != 0) {
    throw std::invalid_argument(std::string("LocalComm::") + what + ": root " +
                                std::to_string(root) + " is not a rank of a size-1 communicator");
  }
}

}  // namespace

std::string LocalComm::host() const {
  // HOST_NAME_MAX excludes the terminating NUL; gethostname may not NUL-terminate
  // a truncated name, so the buffer is one larger and zeroed.
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown-host";
  return std::string(name);
}

void LocalComm::broadcast(std::vector<std::uint8_t>& bytes, int root) {
  require_root_zero(root, "broadcast");
  // The only rank is the root: its bytes are already everywhere.
}

std::vector<std::vector<std::uint8_t>> LocalComm::gatherv(const std::vector<std::uint8_t>& mine,
                                                          int root) {
  require_root_zero(root, "gatherv");
  return {mine};
}

std::vector<std::vector<std::uint8_t>> LocalComm::allgatherv(const std::vector<std::uint8_t>& mine) {
  return {mine};
}

// A reduction over one rank leaves every value as it is.
void LocalComm::allreduce(double* values, std::size_t n, ReduceOp op) {}
void LocalComm::allreduce(float* values, std::size_t n, ReduceOp op) {}
void LocalComm::allreduce(std::int64_t* values, std::size_t n, ReduceOp op) {}

}  // namespace align2
