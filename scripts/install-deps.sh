#!/usr/bin/env bash
# Installs every Debian package align2 needs to build, test and run. Idempotent.
# Usage (as root on Debian 12): bash scripts/install-deps.sh
set -euo pipefail

packages=(
  build-essential g++ cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  nlohmann-json3-dev libfmt-dev libgtest-dev libstb-dev libjpeg-dev libwebp-dev
  libssl-dev libsimdjson-dev
  libsentencepiece-dev
  clang libclang-rt-14-dev
  python3 python3-h5py python3-numpy python3-pil
  chromium
  slurm-wlm munge
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Install services without starting them (slurm-wlm's and munge's scripts would start daemons
  # that have no configuration; scripts/slurm-local.sh starts its own by hand, without systemd).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present" >&2
fi
