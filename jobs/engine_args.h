// The engine flags the model-running commands share: --threads, --device and --dtype.
#pragma once

#include "core/engine/engine_runtime.h"
#include "jobs/cli.h"

namespace align2::cli {

// --threads N (default: all cores): sets the engine's CPU threads; returns the count.
int parse_threads(const Args& args);

// Where and in what precision a command's model runs.
struct EngineChoice {
  at::Device device = at::Device(at::kCPU);
  at::ScalarType dtype = at::kFloat;
};

// --device auto|cuda|cpu (default auto: a GPU when libtorch has CUDA and one is visible) and
// --dtype auto|f32|bf16|f16 (default auto: bf16 on a GPU, f32 on the CPU; f16 only on a GPU).
// Throws UsageError for a bad name, std::runtime_error when the device cannot be had.
EngineChoice parse_engine(const Args& args);

}  // namespace align2::cli
