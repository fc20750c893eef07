#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs the packages,
# builds, and runs every ctest label (cpu, mpi under 2-3 ranks, gpu skips without a GPU).
# Usage: bash scripts/test.sh [ctest arguments, e.g. -L cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
# Open MPI refuses root unless told; the mpi tests set these too.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
