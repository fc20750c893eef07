#!/usr/bin/env bash
# Configures and builds align2 into ./build (Release, Ninja). Extra arguments go to cmake.
# Usage: bash scripts/build.sh [-DALIGN2_WITH_CUDA=OFF ...]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${ALIGN2_BUILD_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$jobs"
