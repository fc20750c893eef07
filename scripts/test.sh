#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs the packages,
# builds, starts a loopback Slurm of this machine (scripts/slurm-local.sh: munged, slurmctld,
# slurmd, state in a temporary folder), and runs every ctest label (cpu, mpi under 2-3 ranks,
# slurm on the loopback cluster, gpu skips without a GPU); the daemons are stopped on exit.
# Usage: bash scripts/test.sh [ctest arguments, e.g. -L cpu]
#   ALIGN2_NO_SLURM=1  do not start Slurm (the slurm tests then skip)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
# Open MPI refuses root unless told; the mpi tests set these too.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ -z "${ALIGN2_NO_SLURM:-}" ]; then
  ALIGN2_SLURM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/align2-slurm.XXXXXX")
  export ALIGN2_SLURM_DIR SLURM_CONF=$ALIGN2_SLURM_DIR/slurm.conf
  stop_slurm() {
    local rc=$?
    bash scripts/slurm-local.sh stop || true
    if [ "$rc" = 0 ]; then
      rm -rf "$ALIGN2_SLURM_DIR"
    else
      echo "test.sh: Slurm's logs stay in $ALIGN2_SLURM_DIR/log" >&2
    fi
    exit "$rc"
  }
  trap stop_slurm EXIT
  bash scripts/slurm-local.sh start > /dev/null
else
  unset SLURM_CONF  # the slurm tests skip without it (never submitting to a real cluster)
fi
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
