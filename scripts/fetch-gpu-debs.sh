#!/usr/bin/env bash
# Prepares, on a Debian 12 machine with apt, the folder that scripts/gpu-check.sh needs on a GPU
# machine that has no apt and no network (docs/gpu.md, "The GPU check"):
#
#   bash scripts/fetch-gpu-debs.sh DIR [--with-cmake] [--no-shared]
#
#   DIR/debs/*.deb   the Debian 12 (bookworm, amd64) packages that align2's build and tests need
#                    beyond what a CUDA + PyTorch image has: Open MPI (headers, libraries, mpirun),
#                    HDF5 (C headers and library), fmt, nlohmann-json, GoogleTest, ninja, and every
#                    library those need except glibc, libstdc++, libgcc_s and zlib, which any Linux
#                    image has (18 MB). --with-cmake adds Debian's cmake 3.25 and its libraries
#                    (21 MB more, libicu alone 9 MB): the GPU image ships cmake and ninja itself
#                    (docs/gpu.md), and gpu-check.sh takes the image's cmake when it is 3.25 or
#                    newer, the prefix's otherwise. gpu-check.sh unpacks them with `dpkg -x` into
#                    a prefix of its own (never into /) and points PATH, LD_LIBRARY_PATH and
#                    OPAL_PREFIX there for the commands that need them.
#   DIR/shared/      a copy of the test data beside this checkout (../shared: the LLaMA tokenizer
#                    gpu_reference.py writes its model with, stories260K and the images that
#                    reward_model_test reads); --no-shared skips it.
#
# Only `apt-get download` is used: nothing is installed here, no root is needed beyond what apt
# asks for reading its lists (run `apt-get update` once first if they are missing). The folder is
# meant to travel with the working tree to the GPU machine: put it inside the checkout and have
# git ignore it, e.g. DIR=.gpu with `echo /.gpu/ >> .git/info/exclude`.
#
# At the end the script unpacks the packages into a scratch prefix and lists, for every shared
# library and program in it, the libraries it needs that neither the prefix nor that base set
# (glibc, libstdc++, libgcc_s, zlib) provides, so a missing package shows here and not on the GPU
# machine. Open MPI's optional transport plugins (UCX, libfabric, PSM, verbs) are not brought:
# their plugins fail to load and are skipped (gpu-check.sh silences those messages); everything
# runs over shared memory and TCP on one node. Prints the folder's size. Exit status: non-zero
# when a download fails or a needed library is missing.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
dir='' cmake=0 shared=1
while [ $# -gt 0 ]; do
  case "$1" in
    --with-cmake) cmake=1 ;;
    --no-shared) shared=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "fetch-gpu-debs: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [ -z "$dir" ] || { echo "fetch-gpu-debs: one DIR only" >&2; exit 2; }; dir=$1 ;;
  esac
  shift
done
[ -n "$dir" ] || { usage >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)

# The build's own needs (CMakeLists.txt: MPI, HDF5 C, nlohmann_json, fmt, GTest; ninja).
packages=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common   # MPI C++ headers, libmpi, mpirun/orted
  libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libmunge2 libnl-3-200 libudev1
  libhdf5-dev libhdf5-103-1 libsz2 libaec0                 # HDF5 (serial) headers and library
  libcurl4 libnghttp2-14 libidn2-0 libunistring2 librtmp1 libssh2-1 libpsl5 libbrotli1 libzstd1
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libldap-2.5-0 libsasl2-2 libgnutls30 libp11-kit0 libtasn1-6
  libnettle8 libhogweed6 libgmp10 libffi8 libssl3          # libhdf5 links libcurl (ROS3 driver)
  libfmt-dev libfmt9 nlohmann-json3-dev libgtest-dev ninja-build
  libssl-dev libsimdjson-dev libsimdjson14                 # SHA-256 (libcrypto), record parsing
)
if [ "$cmake" = 1 ]; then
  packages+=(cmake cmake-data libarchive13 libjsoncpp25 librhash0 libuv1 libexpat1 libxml2 libicu72
             libacl1 liblz4-1 liblzma5 libbz2-1.0)
fi

mkdir -p "$dir/debs"
dir=$(cd "$dir" && pwd)
rm -f "$dir"/debs/*.deb
# apt's download sandbox user (_apt) may not write into DIR: download as the caller.
(cd "$dir/debs" && apt-get download -o APT::Sandbox::User=root "${packages[@]}")
echo "fetch-gpu-debs: $(ls "$dir"/debs/*.deb | wc -l) packages in $dir/debs ($(du -sh "$dir/debs" | cut -f1))"

if [ "$shared" = 1 ]; then
  src=$repo/../shared
  [ -d "$repo/shared" ] && src=$repo/shared
  if [ -d "$src" ]; then
    rm -rf "$dir/shared"
    mkdir -p "$dir/shared"
    for part in README.md SOURCES.md data models tokenizers; do
      [ -e "$src/$part" ] && cp -r "$src/$part" "$dir/shared/"
    done
    chmod -R u+w "$dir/shared"
    echo "fetch-gpu-debs: test data copied from $src to $dir/shared ($(du -sh "$dir/shared" | cut -f1))"
  else
    echo "fetch-gpu-debs: no shared/ beside or inside $repo: pass --tokenizer and --shared to gpu-check.sh" >&2
  fi
fi

# --- closure check: every NEEDED library is in the prefix or in the base set ---------------------
if ! command -v readelf > /dev/null; then
  echo "fetch-gpu-debs: readelf missing (binutils): closure not checked"
  echo "fetch-gpu-debs: $dir holds $(du -sh "$dir" | cut -f1)"
  exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$scratch"; done
base=' libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libutil.so.1 libresolv.so.2 ld-linux-x86-64.so.2 '
base+='libstdc++.so.6 libgcc_s.so.1 libz.so.1 '
# Plugins of transports that are deliberately not brought (see the header), and Java/Fortran bindings.
optional='mca_(atomic|osc|pml|spml|sshmem)_ucx|mca_(btl|mtl)_ofi|mca_mtl_psm2?|mca_btl_openib|libmpi_java|fortran|libmca_common_(ucx|ofi|verbs)'
declare -A have=()
while IFS= read -r f; do have[$(basename "$f")]=1; done < <(find "$scratch" \( -type f -o -type l \) -name '*.so*')
missing=0
while IFS= read -r f; do
  case "$f" in *.so* | */bin/*) ;; *) continue ;; esac
  [[ "$f" =~ $optional ]] && continue
  head -c 4 "$f" 2> /dev/null | grep -q 'ELF' || continue
  for n in $(readelf -d "$f" 2> /dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${have[$n]:-}" ] && continue
    case "$base" in *" $n "*) continue ;; esac
    echo "fetch-gpu-debs: MISSING $n, needed by ${f#"$scratch"/}"
    missing=1
  done
done < <(find "$scratch" -type f)
if [ "$missing" = 0 ]; then
  echo "fetch-gpu-debs: closure checked: every library needed is in the packages or in glibc/libstdc++/libgcc_s/zlib"
fi
echo "fetch-gpu-debs: $dir holds $(du -sh "$dir" | cut -f1)"
exit "$missing"
