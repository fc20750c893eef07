#!/usr/bin/env bash
# align2's engine and llama.cpp side by side: same machine, same model, same run (not in CI).
# Figures go to docs/performance.md ("Side by side with llama.cpp").
#   bash bench/llama_cpp_bench.sh LLAMA_CPP_DIR [THREADS]
# LLAMA_CPP_DIR is a llama.cpp source tree (a clone of github.com/ggml-org/llama.cpp; run with the
# tree of 2025-02-20, commit c392e50: newer trees may rename a flag or gguf-py call); its
# llama-bench and llama-batched-bench are built in LLAMA_CPP_DIR/build-align2 for this CPU
# (GGML_NATIVE) unless they are there already. THREADS defaults to the machine's cores.
#   1. engine_bench THREADS: align2's prefill (reward scoring: batch 4 of 576 image + 200 text
#      positions) and decode (16-token prompts, 32 steps, batch 1 and 32), fp32 and bf16, on the
#      benchmark LLaMA (hidden 1024, 8 layers, vocab 32000), which it writes on first use;
#   2. bench/write_gguf.py: that very model as F32 and BF16 GGUF files;
#   3. llama-bench: one 776-token prompt (pp776) and 32 new tokens (tg32), 3 repetitions;
#   4. llama-batched-bench: 16-token prompts and 32 new tokens for 1 and 32 sequences (S_TG is
#      generated tokens per second over all sequences, as engine_bench counts them), and 4
#      prompts of 776 tokens (S_PP: prompt tokens per second, the reward-scoring shape).
# Needs cmake, a C++ compiler and Python 3 with numpy, yaml and sentencepiece (llama.cpp's
# gguf-py imports them; Debian: python3-numpy python3-yaml python3-sentencepiece).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
llama=$(cd "$1" && pwd)
threads=${2:-$(nproc)}
bin=${BIN:-build/bin}
scratch=${SCRATCH:-/tmp/align2-engine-bench}
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE   # benchmarks only (see docs/performance.md)
python=${PYTHON:-python3}
[ -f "$llama/gguf-py/gguf/__init__.py" ] || { echo "llama_cpp_bench: $llama has no gguf-py: not a llama.cpp tree" >&2; exit 1; }
[ -x "$bin/engine_bench" ] || { echo "llama_cpp_bench: $bin/engine_bench is missing: build first (scripts/build.sh)" >&2; exit 1; }
"$python" -c 'import numpy, yaml, sentencepiece' 2>/dev/null || {
  echo "llama_cpp_bench: $python lacks numpy, yaml or sentencepiece (Debian: apt-get install python3-numpy" \
       "python3-yaml python3-sentencepiece; PYTHON=/usr/bin/python3 picks Debian's Python)" >&2
  exit 1
}

build="$llama/build-align2"
if [ ! -x "$build/bin/llama-bench" ] || [ ! -x "$build/bin/llama-batched-bench" ]; then
  echo "== building llama.cpp's benchmarks in $build"
  cmake -S "$llama" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF > "$build.log" 2>&1 || { tail -20 "$build.log" >&2; exit 1; }
  cmake --build "$build" --target llama-bench llama-batched-bench -j "$(nproc)" >> "$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; exit 1; }
fi
# What ggml compiled for (GGML_NATIVE leaves the per-ISA options OFF and passes -march=native).
echo "llama.cpp: $(git -C "$llama" describe --tags --always 2>/dev/null || echo "$llama (not a git checkout)");" \
     "$(grep -h -o 'Adding CPU backend variant.*' "$build.log" 2>/dev/null || echo "CPU backend flags: see $build.log")"
echo "cpu flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"

echo "== 1. align2 engine_bench $threads"
"$bin/engine_bench" "$threads" "$scratch"

echo "== 2. the same model as GGUF"
model="$scratch/llama-1024x8"
for dtype in f32 bf16; do
  "$python" bench/write_gguf.py "$model" "$scratch/llama-1024x8-$dtype.gguf" "$dtype" "$llama/gguf-py"
done

for dtype in f32 bf16; do
  gguf="$scratch/llama-1024x8-$dtype.gguf"
  echo "== 3. llama-bench, $dtype"
  "$build/bin/llama-bench" -m "$gguf" -t "$threads" -p 776 -n 32 -r 3 -o md
  echo "== 4. llama-batched-bench, $dtype"
  "$build/bin/llama-batched-bench" -m "$gguf" -t "$threads" -tb "$threads" -c 4096 -b 4096 -ub 512 \
    -npp 16 -ntg 32 -npl 1,32 2>&1 | grep -E '^\|'
  "$build/bin/llama-batched-bench" -m "$gguf" -t "$threads" -tb "$threads" -c 4096 -b 4096 -ub 512 \
    -npp 776 -ntg 1 -npl 4 2>&1 | grep -E '^\|'
done
