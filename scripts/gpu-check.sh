#!/usr/bin/env bash
# The GPU check: builds align2 against the libtorch inside the machine's PyTorch wheel with the
# CUDA/NCCL parts on, runs its GPU tests, compares its numbers with transformers' on a small random
# LLaVA, and measures reward scoring at the LLaVA-7B shape. Written for a machine with an NVIDIA GPU,
# a CUDA PyTorch wheel (torch, transformers, safetensors, h5py, PIL in `python3`), a C++ compiler,
# no apt and no network; the Debian packages the build needs come in a folder prepared elsewhere
# by scripts/fetch-gpu-debs.sh. docs/gpu.md, "The GPU check", says how to run it and read it.
#
#   bash scripts/gpu-check.sh [--debs DIR] [--out DIR] [options]
#
#   --debs DIR        the folder of fetch-gpu-debs.sh (DIR/debs/*.deb, or *.deb in DIR itself): each
#                     package is unpacked with `dpkg -x` (ar + tar where there is no dpkg) into
#                     WORK/prefix, never into /; wrappers (WORK/bin: mpicxx, mpirun, align2) and
#                     CMAKE_PREFIX_PATH, HDF5_ROOT, MPI_CXX_COMPILER, -Wl,-rpath-link point the
#                     build at it; LD_LIBRARY_PATH and OPAL_PREFIX (Open MPI relocated) are set only
#                     for the programs that need them (mpirun, the tests, align2, gpu_bench), never
#                     for the compilers or Python. DIR/shared (test data) and
#                     DIR/shared/tokenizers/llama/tokenizer.model are used when present.
#                     Without --debs the system's packages are used (a Debian machine with
#                     scripts/install-deps.sh run).
#   --out DIR         where gpu-check.log (everything printed) and gpu-check.json (every step's
#                     status and time, and the figures) go (default ./gpu-check-out). Nothing else
#                     is written there, so it can be a folder whose files are collected.
#   --build-dir DIR   the CMake build folder (default ./build-gpu; kept between runs: a second run
#                     rebuilds only what changed)
#   --work DIR        scratch: prefix, wrappers, models, outputs (default BUILD_DIR/gpu-check-work)
#   --cuda-root DIR   ALIGN2_CUDA_ROOT (default $ALIGN2_CUDA_ROOT, else /usr/local/cuda). When it
#                     lacks NCCL or the CUDA runtime (a toolkit without NCCL, or no toolkit), a root
#                     is assembled in WORK/cuda-root from symlinks: DIR's own files plus the
#                     include/ and lib/ folders of the nvidia-* wheels PyTorch installed
#                     (site-packages/nvidia/*: nccl, cu13 or cuda_runtime, ...), unversioned
#                     libnccl.so / libcudart.so links added, and bin/nvcc linked to a real nvcc when
#                     one exists (else the build gets -DALIGN2_CUDA_REQUIRE_NVCC=OFF, cmake/cuda.cmake).
#                     A wheel's cuDNN (site-packages/nvidia/cudnn) is passed to libtorch's CMake
#                     config (CUDNN_INCLUDE_PATH, CUDNN_LIBRARY_PATH) when the toolkit has none.
#   --tokenizer FILE  a LLaMA SentencePiece tokenizer.model for the reference model (default: the
#                     one in DIR/shared, ./shared or ../shared, tokenizers/llama/tokenizer.model)
#   --shared DIR      the test data folder for reward_model_test (ALIGN2_SHARED_DIR; default DIR/shared,
#                     ./shared or ../shared)
#   --python PY       the Python with torch and transformers (default python3)
#   --steps LIST      comma list of steps to run (default all, in this order):
#                       info        GPU (nvidia-smi), driver, torch / CUDA / transformers versions
#                       deps        unpack --debs, write the wrappers, check mpirun runs
#                       cuda        choose or assemble ALIGN2_CUDA_ROOT
#                       configure   cmake -G Ninja -DALIGN2_WITH_CUDA=ON against the wheel's libtorch
#                       build       ninja: align2, gpu_bench, reward_model_test, every test labelled gpu
#                       test-gpu    ctest -L gpu (nccl_comm_test under mpirun -np 1 and 2, gpu_engine_test)
#                       test-cpu    ctest -R reward_model_test (label cpu)
#                       reference   bench/gpu_reference.py: align2 against transformers, f32 and bf16
#                       bench       bench/gpu_bench: bf16 peak, reward scoring at the 7B shape, MFU
#                       hf-bench    bench/gpu_transformers_bench.py: transformers on the same shape
#   --budget SECONDS  the whole run's time (default 570, for a 600 s command limit): each step runs
#                     under `timeout` for the smaller of its own cap and what is left, less 15 s
#                     kept for writing the results; a step that no time is left for is not run.
#   --jobs N          build jobs (default nproc)
#   --torch-cmake-prefix DIR   libtorch's CMake prefix (default: torch.utils.cmake_prefix_path of PY)
#
# Steps go on after a failure where that makes sense (the Python-only hf-bench always runs; the
# steps that need the build are not run when it failed). Exit status: 0 when every step asked for
# passed, 1 when one failed, timed out or could not run, 2 for wrong usage.
set -uo pipefail

here=$PWD
repo=$(cd "$(dirname "$0")/.." && pwd)
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
abspath() { (cd "$here" && realpath -m -- "$1"); }

debs='' out=gpu-check-out build='' work='' cuda_root=${ALIGN2_CUDA_ROOT:-/usr/local/cuda} tokenizer='' shared=''
python=${PYTHON:-python3} steps=all budget=570 jobs=$(nproc) torch_prefix=''
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --debs | --out | --build-dir | --work | --cuda-root | --tokenizer | --shared | --python | --steps | --budget | \
      --jobs | --torch-cmake-prefix)
      [ $# -ge 2 ] || { echo "gpu-check: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --debs) debs=$(abspath "$2") ;;
        --out) out=$2 ;;
        --build-dir) build=$(abspath "$2") ;;
        --work) work=$(abspath "$2") ;;
        --cuda-root) cuda_root=$(abspath "$2") ;;
        --tokenizer) tokenizer=$(abspath "$2") ;;
        --shared) shared=$(abspath "$2") ;;
        --python) python=$2 ;;
        --steps) steps=$2 ;;
        --budget) budget=$2 ;;
        --jobs) jobs=$2 ;;
        --torch-cmake-prefix) torch_prefix=$(abspath "$2") ;;
      esac
      shift 2 ;;
    *) echo "gpu-check: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
all_steps=(info deps cuda configure build test-gpu test-cpu reference bench hf-bench)
[ "$steps" = all ] && steps=$(IFS=,; echo "${all_steps[*]}")
for s in ${steps//,/ }; do
  case " ${all_steps[*]} " in *" $s "*) ;; *) echo "gpu-check: unknown step $s (steps: ${all_steps[*]})" >&2; exit 2 ;; esac
done
case "$budget" in '' | *[!0-9]*) echo "gpu-check: --budget takes whole seconds" >&2; exit 2 ;; esac
case "$jobs" in '' | *[!0-9]* | 0) echo "gpu-check: --jobs takes a positive number" >&2; exit 2 ;; esac
[ -z "$debs" ] || [ -d "$debs" ] || { echo "gpu-check: --debs $debs is not a folder" >&2; exit 2; }
out=$(abspath "$out")
[ -n "$build" ] || build=$repo/build-gpu
[ -n "$work" ] || work=$build/gpu-check-work
mkdir -p "$out" "$work" || exit 2
log=$out/gpu-check.log
: > "$log"
exec 3>&1 4>&2
exec > >(tee -a "$log") 2>&1  # everything below goes to the terminal and the log
tee_pid=$!
start=$(date +%s)
deadline=$((start + budget))
records=$work/steps.tsv
: > "$records"
echo "gpu-check: $(date -u +%FT%TZ) repo $repo ($(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo no git))" \
  "steps $steps, budget ${budget}s, build $build, out $out"

# --- step machinery -------------------------------------------------------------------------------
# run_step NAME CAP FUNCTION: runs FUNCTION when NAME was asked for, with STEP_END = the time it must
# end by; each command inside goes through `tmo`, which kills it at STEP_END. Records NAME, status
# (ok, failed, timeout, not_run, skipped), exit code, seconds and a note in steps.tsv.
declare -A status=()
note=''
wanted() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >> "$records"; status[$1]=$2; }
tmo() {
  local left=$((STEP_END - $(date +%s)))
  [ "$left" -gt 0 ] || return 124
  timeout --kill-after=10 "$left" "$@"
}
run_step() {
  local name=$1 cap=$2 fn=$3 t0 rc left
  if ! wanted "$name"; then record "$name" skipped 0 0 "not asked for"; return 0; fi
  left=$((deadline - 15 - $(date +%s)))
  if [ "$left" -lt 10 ]; then
    echo "=== $name: not run: the time budget is spent"
    record "$name" not_run 0 0 "no time left in the budget"
    return 0
  fi
  [ "$cap" -lt "$left" ] || cap=$left
  echo
  echo "=== $name (at most ${cap}s) ==="
  note=''
  t0=$(date +%s)
  STEP_END=$((t0 + cap))
  "$fn"
  rc=$?
  local secs=$(($(date +%s) - t0)) st
  case "$rc" in
    0) st=ok ;;
    124 | 137) st=timeout ;;  # timeout(1): 124 at the limit, 137 when it had to kill
    200) st=not_run ;;        # the step's own "cannot run": a step it needs did not pass
    *) st=failed ;;
  esac
  echo "=== $name: $st (exit $rc, ${secs}s)${note:+: $note}"
  record "$name" "$st" "$rc" "$secs" "$note"
}
needs() {  # needs STEP...: 200 (not run) when a needed step was asked for and did not pass
  local s
  for s in "$@"; do
    if [ "${status[$s]:-skipped}" != ok ] && [ "${status[$s]:-skipped}" != skipped ]; then
      note="needs $s (${status[$s]})"
      return 200
    fi
  done
  return 0
}

# --- defaults that depend on the folders ------------------------------------------------------------
first_existing() { local p; for p in "$@"; do [ -e "$p" ] && { echo "$p"; return 0; }; done; return 1; }
if [ -z "$shared" ]; then
  shared=$(first_existing ${debs:+"$debs/shared"} "$repo/shared" "$repo/../shared") || shared=''
  [ -z "$shared" ] || shared=$(realpath "$shared")
fi
if [ -z "$tokenizer" ]; then
  tokenizer=$(first_existing ${shared:+"$shared/tokenizers/llama/tokenizer.model"} ${debs:+"$debs/tokenizer.model"}) ||
    tokenizer=''
fi
prefix=$work/prefix
wrap=$work/bin
L=$prefix/usr/lib/x86_64-linux-gnu
prefix_ld="$L:$L/openmpi/lib:$L/pmix2/lib"
# PENV: `env` and the settings of every program that loads Open MPI, HDF5 or fmt from the prefix
# (not the compilers, not Python): the prefix's libraries first, Open MPI relocated (OPAL_PREFIX),
# its optional transports' plugins (UCX, libfabric, PSM, verbs: not brought) skipped silently,
# mpirun allowed as root (the GPU machines run commands as root). Used as `tmo "${PENV[@]}" CMD`.
PENV=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
if [ -n "$debs" ]; then
  PENV+=(LD_LIBRARY_PATH="$prefix_ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OPAL_PREFIX="$prefix/usr"
    OMPI_MCA_mca_base_component_show_load_errors=0)
fi

# --- info -----------------------------------------------------------------------------------------
step_info() {
  local rc=0
  if command -v nvidia-smi > /dev/null; then
    tmo nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,clocks.max.sm --format=csv || rc=1
  else
    echo "nvidia-smi: not found"
    note="no nvidia-smi"
    rc=1
  fi
  echo "kernel: $(uname -srm); $(ldd --version 2> /dev/null | head -1)"
  echo "c++: $(c++ --version 2> /dev/null | head -1); nvcc: $(nvcc --version 2> /dev/null | tail -1 || echo none on PATH)"
  echo "cmake: $(cmake --version 2> /dev/null | head -1 || echo none); ninja: $(ninja --version 2> /dev/null || echo none)"
  tmo "$python" - "$work/info.json" << 'EOF' || rc=1
import json, platform, sys
info = {"python": sys.version.split()[0], "platform": platform.platform()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                cxx11_abi=bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)),
                cmake_prefix_path=torch.utils.cmake_prefix_path)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm=f"{p.major}.{p.minor}",
                    multiprocessors=p.multi_processor_count, gpus=torch.cuda.device_count(),
                    nccl=".".join(map(str, torch.cuda.nccl.version())))
except Exception as e:  # noqa: BLE001 - reported, not fatal here
    info["torch_error"] = repr(e)
for name in ("transformers", "peft", "safetensors", "h5py", "numpy", "PIL"):
    try:
        info[name] = __import__(name).__version__
    except Exception as e:  # noqa: BLE001
        info[name] = f"missing ({type(e).__name__})"
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info, indent=1))
sys.exit(0 if info.get("cuda_available") else 1)
EOF
  [ "$rc" = 0 ] || note="${note:+$note; }torch sees no GPU, or nvidia-smi failed"
  return $rc
}

# --- deps: the Debian packages, relocated -----------------------------------------------------------
write_wrapper() {  # write_wrapper NAME TARGET: WORK/bin/NAME runs TARGET with the settings of PENV
  mkdir -p "$wrap"
  {
    echo '#!/bin/sh'
    echo "# gpu-check.sh: runs $2${debs:+ with the libraries of $prefix (Open MPI relocated there)}."
    if [ -n "$debs" ]; then
      echo "export LD_LIBRARY_PATH=\"$prefix_ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\" OPAL_PREFIX=\"$prefix/usr\""
      echo 'export OMPI_MCA_mca_base_component_show_load_errors=0'
    fi
    echo 'export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1'
    echo "exec \"$2\" \"\$@\""
  } > "$wrap/$1"
  chmod +x "$wrap/$1"
}
deb_extract() {  # deb_extract FILE DIR: dpkg -x, or ar + tar where dpkg is missing (a .deb is an ar archive)
  if command -v dpkg > /dev/null; then
    dpkg -x "$1" "$2"
    return
  fi
  local member
  member=$(ar t "$1" | grep '^data\.tar') || return 1
  case "$member" in
    *.xz) ar p "$1" "$member" | tar -xJ -C "$2" ;;
    *.zst) ar p "$1" "$member" | zstd -dc | tar -x -C "$2" ;;
    *.gz) ar p "$1" "$member" | tar -xz -C "$2" ;;
    *) ar p "$1" "$member" | tar -x -C "$2" ;;
  esac
}
step_deps() {
  mkdir -p "$wrap"
  if [ -z "$debs" ]; then
    note="no --debs: the system's packages"
    return 0
  fi
  local d=$debs n=0 f
  [ -d "$debs/debs" ] && d=$debs/debs
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for f in "$d"/*.deb; do
    [ -e "$f" ] || break
    deb_extract "$f" "$prefix" || { echo "unpacking $f failed"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { note="no .deb in $d"; return 1; }
  # Debian's alternatives (/usr/bin/mpirun -> mpirun.openmpi) are made by dpkg --install, not by -x.
  write_wrapper mpicxx "$prefix/usr/bin/mpicxx.openmpi"
  write_wrapper mpirun "$prefix/usr/bin/mpirun.openmpi"
  write_wrapper mpiexec "$prefix/usr/bin/mpirun.openmpi"
  [ -x "$prefix/usr/bin/cmake" ] && write_wrapper cmake "$prefix/usr/bin/cmake" && write_wrapper ctest "$prefix/usr/bin/ctest"
  echo "unpacked $n packages into $prefix ($(du -sh "$prefix" | cut -f1))"
  tmo "$wrap/mpicxx" --showme:version || return 1
  tmo "$wrap/mpirun" --version | head -1 || return 1
  # An MPI program needs more than mpirun --version: one rank really started once (hostname).
  tmo "$wrap/mpirun" -np 1 --oversubscribe --bind-to none hostname || return 1
  note="$n packages"
}

# --- cuda: ALIGN2_CUDA_ROOT ------------------------------------------------------------------------
cuda_complete() {  # cuda_complete DIR: nccl.h, cuda_runtime.h, libnccl.so|.a and libcudart.so in it
  local r=$1
  [ -f "$r/include/nccl.h" ] && [ -f "$r/include/cuda_runtime.h" ] || return 1
  first_existing "$r"/lib64/libnccl.so "$r"/lib/libnccl.so "$r"/lib64/libnccl.a "$r"/lib/libnccl.a > /dev/null || return 1
  first_existing "$r"/lib64/libcudart.so "$r"/lib/libcudart.so > /dev/null || return 1
}
nvidia_dirs() {  # the nvidia-* wheel folders (site-packages/nvidia/*), NCCL's first; ALIGN2_NVIDIA_DIRS overrides
  local roots
  if [ -n "${ALIGN2_NVIDIA_DIRS:-}" ]; then
    roots=${ALIGN2_NVIDIA_DIRS//:/ }
  else
    roots=$(tmo "$python" -c 'import nvidia; print(" ".join(nvidia.__path__))' 2> /dev/null) || roots=''
  fi
  local r
  for r in $roots; do [ -d "$r/nccl" ] && echo "$r/nccl"; done
  for r in $roots; do for d in "$r"/*/; do d=${d%/}; [ "$(basename "$d")" = nccl ] || echo "$d"; done; done
}
cuda_root_used='' require_nvcc=ON
step_cuda() {
  if cuda_complete "$cuda_root"; then
    cuda_root_used=$cuda_root
    [ -x "$cuda_root/bin/nvcc" ] || require_nvcc=OFF
    note="$cuda_root as it is (nvcc: $([ "$require_nvcc" = ON ] && echo yes || echo no))"
    return 0
  fi
  local fake=$work/cuda-root src e f name sources=()
  echo "$cuda_root lacks NCCL or the CUDA runtime: assembling $fake"
  rm -rf "$fake"
  mkdir -p "$fake/include" "$fake/lib64" "$fake/bin"
  mapfile -t sources < <(nvidia_dirs)
  [ -d "$cuda_root" ] && sources=("$cuda_root" "${sources[@]}")
  # The NCCL wheel first (torch loads that very library), then the toolkit, then the other wheels.
  local ordered=() s
  for s in "${sources[@]}"; do [ "$(basename "$s")" = nccl ] && ordered+=("$s"); done
  for s in "${sources[@]}"; do [ "$(basename "$s")" = nccl ] || ordered+=("$s"); done
  for src in "${ordered[@]}"; do
    echo "  from $src"
    for e in "$src"/include/*; do
      [ -e "$e" ] && [ ! -e "$fake/include/$(basename "$e")" ] && ln -s "$e" "$fake/include/"
    done
    for d in "$src/lib64" "$src/lib"; do
      for f in "$d"/*; do
        [ -e "$f" ] && [ ! -e "$fake/lib64/$(basename "$f")" ] && ln -s "$f" "$fake/lib64/"
      done
    done
  done
  # find_library wants libX.so; wheels ship only libX.so.N.
  for f in "$fake"/lib64/lib*.so.*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    [ -e "$fake/lib64/${name%%.so.*}.so" ] || ln -s "$name" "$fake/lib64/${name%%.so.*}.so"
  done
  local nvcc candidates=("$cuda_root/bin/nvcc" "$(command -v nvcc 2> /dev/null || echo /nonexistent)")
  for s in "${ordered[@]}"; do candidates+=("$s/bin/nvcc"); done
  nvcc=$(first_existing "${candidates[@]}") || nvcc=''
  if [ -n "$nvcc" ]; then
    ln -s "$(realpath "$nvcc")" "$fake/bin/nvcc"
  else
    require_nvcc=OFF
  fi
  if ! cuda_complete "$fake"; then
    note="no nccl.h / cuda_runtime.h / libnccl / libcudart found in $cuda_root or the nvidia wheels"
    ls -l "$fake/include" "$fake/lib64" | head -40
    return 1
  fi
  cuda_root_used=$fake
  note="assembled $fake (nvcc: ${nvcc:-none, ALIGN2_CUDA_REQUIRE_NVCC=OFF})"
}

# --- configure ---------------------------------------------------------------------------------------
cmake_bin='' ctest_bin=''
pick_cmake() {  # the image's cmake when >= 3.25, else the prefix's
  local c v
  for c in "$(command -v cmake 2> /dev/null)" "$wrap/cmake"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$("$c" --version 2> /dev/null | head -1 | awk '{print $3}')
    if [ -n "$v" ] && [ "$(printf '%s\n3.25\n' "$v" | sort -V | head -1)" = 3.25 ]; then
      cmake_bin=$c
      ctest_bin=$(dirname "$c")/ctest
      return 0
    fi
  done
  return 1
}
step_configure() {
  needs deps cuda || return
  if [ -z "$cuda_root_used" ]; then  # step cuda not run this time: what an earlier run chose
    cuda_root_used=$cuda_root
    cuda_complete "$cuda_root" || { cuda_complete "$work/cuda-root" && cuda_root_used=$work/cuda-root; }
    [ -x "$cuda_root_used/bin/nvcc" ] || require_nvcc=OFF
  fi
  pick_cmake || { note="no cmake 3.25 or newer (the image's, or --debs from fetch-gpu-debs.sh --with-cmake)"; return 1; }
  local ninja_bin
  ninja_bin=$(first_existing "$(command -v ninja 2> /dev/null || echo /nonexistent)" "$prefix/usr/bin/ninja") ||
    { note="no ninja"; return 1; }
  if [ -z "$torch_prefix" ]; then
    torch_prefix=$(tmo "$python" -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
      { note="$python cannot import torch"; return 1; }
  fi
  local args=(-S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_MAKE_PROGRAM="$ninja_bin"
    -DALIGN2_WITH_CUDA=ON -DALIGN2_CUDA_ROOT="$cuda_root_used" -DALIGN2_CUDA_REQUIRE_NVCC="$require_nvcc")
  local prefixes=$torch_prefix
  if [ -n "$debs" ]; then
    prefixes="$prefix/usr;$torch_prefix"
    args+=(-DHDF5_ROOT="$L/hdf5/serial" -DMPI_CXX_COMPILER="$wrap/mpicxx" -DMPIEXEC_EXECUTABLE="$wrap/mpirun"
      "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$prefix_ld" "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath-link,$prefix_ld")
  fi
  args+=(-DCMAKE_PREFIX_PATH="$prefixes")
  # libtorch's CMake config looks for cuDNN in the toolkit; a wheel's cuDNN lives in
  # site-packages/nvidia/cudnn (and some libtorch versions stop when it is not found).
  local d lib
  if [ ! -f "$cuda_root/include/cudnn.h" ]; then
    for d in $(nvidia_dirs); do
      [ "$(basename "$d")" = cudnn ] && [ -f "$d/include/cudnn.h" ] || continue
      lib=$(first_existing "$d"/lib/libcudnn.so "$d"/lib/libcudnn.so.*) || continue
      args+=(-DCUDNN_INCLUDE_PATH="$d/include" -DCUDNN_LIBRARY_PATH="$lib")
      break
    done
  fi
  [ -n "$shared" ] && args+=(-DALIGN2_SHARED_DIR="$shared")
  # libtorch's own CMake config finds the CUDA toolkit (nvcc) itself: put a toolkit's nvcc on PATH.
  local toolkit_bin=''
  command -v nvcc > /dev/null || { [ -x "$cuda_root/bin/nvcc" ] && toolkit_bin=$cuda_root/bin; }
  # libtorch headers that demand C++20 (newer wheels: "#error C++20 or later compatible compiler is
  # required"): CMakeLists.txt asks for C++17, so map its C++17 flag to C++20 for this build only.
  local inc=$torch_prefix/../../include  # torch/share/cmake -> torch/include in a wheel
  if grep -rqs "C++20 or later compatible compiler is required" "$inc/c10/macros" "$inc/ATen/ATen.h" 2> /dev/null; then
    printf 'set(CMAKE_CXX17_STANDARD_COMPILE_OPTION "-std=c++20")\nset(CMAKE_CXX17_EXTENSION_COMPILE_OPTION "-std=gnu++20")\n' \
      > "$work/cxx20.cmake"
    args+=(-DCMAKE_PROJECT_INCLUDE="$work/cxx20.cmake")
    note="libtorch's headers require C++20: built with -std=c++20 (CMakeLists.txt asks for 17)"
    echo "gpu-check: $note"
  fi
  echo "$cmake_bin ${args[*]}"
  # TORCH_CUDA_ARCH_LIST: no GPU probing in libtorch's CMake (9.0 = Hopper: H100, H200).
  # (ALIGN2_WITH_CUDA=ON: a configure that passes has the CUDA/NCCL parts on.)
  PATH=${toolkit_bin:+$toolkit_bin:}$PATH TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} tmo "$cmake_bin" "${args[@]}"
}

# --- build ---------------------------------------------------------------------------------------------
step_build() {
  needs configure || return
  pick_cmake || return 1
  # align2, gpu_bench, reward_model_test, and the executables of every test labelled gpu (read from
  # CTestTestfile.cmake files: nccl_comm_test, gpu_engine_test, ... whatever test/CMakeLists.txt
  # registers; each add_test line comes right before its set_tests_properties with the LABELS).
  local targets=(align2 gpu_bench reward_model_test) t
  for t in $(find "$build" -name CTestTestfile.cmake -not -path "$work/*" -exec \
    grep -h -B1 -E 'LABELS "([^"]*;)?gpu(;[^"]*)?"' {} + | grep -o "\"$build/bin/[A-Za-z0-9_]*\"" |
    tr -d '"' | xargs -r -n1 basename | sort -u); do
    targets+=("$t")
  done
  echo "targets: ${targets[*]}"
  tmo "$cmake_bin" --build "$build" -j "$jobs" --target "${targets[@]}" || return 1
  [ -x "$build/bin/align2" ] || return 1
  write_wrapper align2 "$build/bin/align2"
  note="${targets[*]}"
}

# --- tests ------------------------------------------------------------------------------------------------
run_ctest() {  # run_ctest ARGS...: ctest on the build in PENV; fails when no test matched
  pick_cmake || return 1
  tmo "${PENV[@]}" PATH="$wrap:$PATH" "$ctest_bin" --test-dir "$build" --output-on-failure "$@" | tee "$work/ctest.txt"
  local rc=${PIPESTATUS[0]}
  grep -q 'No tests were found' "$work/ctest.txt" && { note="no test matched"; return 1; }
  note=$(grep -m1 'tests passed' "$work/ctest.txt")
  return "$rc"
}
step_test_gpu() {
  needs build || return
  run_ctest -L gpu --timeout 120  # nccl_comm_test_np1, _np2 (each skips when fewer GPUs than ranks)
}
step_test_cpu() {
  needs build || return
  [ -n "$shared" ] || echo "gpu-check: no shared/ test data: reward_model_test's real-data cases will fail"
  run_ctest -R '^reward_model_test$' --timeout 300
}

# --- reference: align2 against transformers ----------------------------------------------------------------
step_reference() {
  needs build || return
  [ -n "$tokenizer" ] && [ -f "$tokenizer" ] || { note="no tokenizer.model (--tokenizer)"; return 1; }
  PYTHONUNBUFFERED=1 tmo "$python" "$repo/bench/gpu_reference.py" --align2 "$wrap/align2" --tokenizer "$tokenizer" \
    --work "$work/reference" --images "$repo/examples/demo/images" --dtypes f32,bf16 --json-out "$work/reference.json"
}

# --- benchmarks -------------------------------------------------------------------------------------------------
step_bench() {
  needs build || return
  tmo "${PENV[@]}" "$build/bin/gpu_bench" --scratch "$work" | tee "$work/gpu_bench.txt"
  local rc=${PIPESTATUS[0]}
  grep -q '^{"gpu_bench"' "$work/gpu_bench.txt" || { [ "$rc" = 0 ] && grep -q 'no GPU: skipped' "$work/gpu_bench.txt" && rc=1; }
  return "$rc"
}
step_hf_bench() {
  PYTHONUNBUFFERED=1 tmo "$python" "$repo/bench/gpu_transformers_bench.py" --json-out "$work/transformers_bench.json"
}

run_step info 60 step_info
run_step deps 90 step_deps
run_step cuda 30 step_cuda
run_step configure 180 step_configure
run_step build 420 step_build
run_step test-gpu 120 step_test_gpu
run_step test-cpu 120 step_test_cpu
run_step reference 240 step_reference
run_step bench 180 step_bench
run_step hf-bench 180 step_hf_bench

# --- results ------------------------------------------------------------------------------------------------------
failed=0
while IFS=$'\t' read -r _ st _; do
  case "$st" in ok | skipped) ;; *) failed=1 ;; esac
done < "$records"
"$python" - "$records" "$work" "$out/gpu-check.json" "$start" "$failed" "$steps" << 'EOF' ||
import json, os, sys, time
records, work, path, start, failed, steps = sys.argv[1:]
def load(name):
    p = os.path.join(work, name)
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
def last_json_line(name, key):
    try:
        for line in reversed(open(os.path.join(work, name)).read().splitlines()):
            if line.startswith("{") and key in line:
                return json.loads(line)[key]
    except (OSError, ValueError, KeyError):
        pass
    return None
result = {
    "align2_gpu_check": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(start))),
    "seconds": int(time.time()) - int(start), "steps_asked": steps.split(","), "ok": failed == "0",
    "steps": [dict(zip(("name", "status", "exit", "seconds", "note"), l.rstrip("\n").split("\t")))
              for l in open(records) if l.strip()],
    "info": load("info.json"), "reference": load("reference.json"),
    "gpu_bench": last_json_line("gpu_bench.txt", "gpu_bench"), "transformers_bench": load("transformers_bench.json"),
}
for s in result["steps"]:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
json.dump(result, open(path, "w"), indent=1)
print(f"gpu-check: results in {path}")
EOF
  echo "gpu-check: could not write $out/gpu-check.json (no Python?); steps: $(tr '\t\n' ' ;' < "$records")"
echo
echo "gpu-check: summary ($(($(date +%s) - start)) s)"
while IFS=$'\t' read -r name st rc secs nt; do
  printf '  %-10s %-8s %4ss  exit %-4s %s\n' "$name" "$st" "$secs" "$rc" "$nt"
done < "$records"
echo "gpu-check: log in $log"
exec 1>&3 2>&4
wait "$tee_pid" 2> /dev/null
exit "$failed"
