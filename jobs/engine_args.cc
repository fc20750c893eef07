#include "jobs/engine_args.h"

#include <fmt/format.h>

#include <thread>

namespace align2::cli {

int parse_threads(const Args& args) {
  int threads = int(int_option(args, "threads", std::max(1u, std::thread::hardware_concurrency()), 1, 4096));
  configure_cpu_engine(threads);
  return threads;
}

EngineChoice parse_engine(const Args& args) {
  DeviceRequest request;
  try {
    request = parse_device_request(args.get("device", "auto"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--{}", e.what()));
  }
  EngineChoice choice;
  choice.device = engine_device(request);
  const std::string dtype = args.get("dtype", "auto");
  if (dtype == "f16") {
    if (!choice.device.is_cuda()) throw UsageError("--dtype f16 runs on a GPU only; use f32 or bf16 on the CPU");
    choice.dtype = at::kHalf;
    return choice;
  }
  try {
    choice.dtype = run_dtype(dtype, choice.device);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--{}", e.what()));
  }
  return choice;
}

}  // namespace align2::cli
