// DataComm (distributed/nccl_comm.h): which communicator a job's data goes through.
#include <stdexcept>
#include <string>

#include "distributed/nccl_comm.h"

namespace align2 {

#if !defined(ALIGN2_HAVE_CUDA)
class NcclComm {};  // never made in a build without CUDA; complete so that DataComm can own one
std::uint64_t cuda_free_bytes(int) { return 0; }
#endif

DataComm::DataComm(Comm& host, int device) : host_(host) {
  std::int64_t on_gpu = device >= 0 ? 1 : 0;
  host.allreduce(&on_gpu, 1, ReduceOp::sum);
  if (on_gpu != 0 && on_gpu != host.size())
    throw std::runtime_error(std::to_string(on_gpu) + " of " + std::to_string(host.size()) +
                             " ranks run on a GPU and the others on the CPU: every rank of a job needs a GPU, "
                             "or set device to cpu");
  if (on_gpu == 0) return;
#if defined(ALIGN2_HAVE_CUDA)
  nccl_ = std::make_unique<NcclComm>(host, device);
  staged_ = make_nccl_staged_comm(host, *nccl_);
#else
  throw std::runtime_error("device " + std::to_string(device) + ": this align2 was built without CUDA and NCCL");
#endif
}

DataComm::~DataComm() = default;

}  // namespace align2
