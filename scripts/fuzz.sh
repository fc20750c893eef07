#!/usr/bin/env bash
# Runs every libFuzzer target of test/fuzz for SECONDS each (default 30), one after another.
# Builds them first when needed: clang, -DALIGN2_FUZZ=ON (ASan + UBSan + libFuzzer, torch-free),
# in ./build-fuzz. Each target starts from a scratch copy of its seed corpus
# (test/fuzz/corpus/<target>/, kept small in the repo) plus its kept crash inputs
# (test/fuzz/regressions/<target>/); what the run adds to the corpus stays in the scratch folder.
# A target that crashes (ASan/UBSan report, abort on a broken property, out-of-memory, timeout)
# stops the script with exit 1 and the path of the crash input: keep it as
# test/fuzz/regressions/<target>/<name> once fixed (docs/reliability.md).
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]
#   ALIGN2_FUZZ_WORK=DIR   where scratch corpora, crash inputs and logs go (default: a new temp dir)
#   ALIGN2_FUZZ_SEED=N     libFuzzer's -seed (default: random), to repeat a run
# fuzz_shard runs in libFuzzer's fork mode with timeouts, out-of-memory and crashes ignored during
# the run: libhdf5 1.10.8 itself can loop forever, allocate gigabytes or read out of bounds on some
# damaged files (docs/reliability.md, Fuzzing, findings 6, 8 and 9). Afterwards every crash input
# it wrote is replayed: one whose report's top frames lie in libhdf5 is a known libhdf5 bug (kept
# in the work dir, counted); any other crash fails the run like in the other targets.
#   ALIGN2_BUILD_JOBS=N    build parallelism (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(record safetensors image tokenizer shard job_config)
fi
jobs=${ALIGN2_BUILD_JOBS:-$(nproc)}

if [ ! -f build-fuzz/build.ninja ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DALIGN2_FUZZ=ON -DALIGN2_WITH_CUDA=OFF > /dev/null
fi
cmake --build build-fuzz -j "$jobs" --target "${targets[@]/#/fuzz_}"

work=${ALIGN2_FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/align2-fuzz.XXXXXX")}
mkdir -p "$work"
# UBSan reports are fatal (-fno-sanitize-recover) and print a stack; ASan's leak check stays on.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
# Leaks inside third-party libraries that align2 cannot free (test/lsan.supp says which and why).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/test/lsan.supp:print_suppressions=0}
status=0
for t in "${targets[@]}"; do
  corpus=$work/corpus-$t
  rm -rf "$work/crash-$t"
  mkdir -p "$corpus" "$work/crash-$t"
  cp test/fuzz/corpus/"$t"/* "$corpus"/
  find test/fuzz/regressions/"$t" -type f ! -name '.*' -exec cp {} "$corpus"/ \;
  log=$work/$t.log
  echo "fuzz.sh: fuzz_$t for ${seconds}s (corpus $corpus, log $log)" >&2
  extra=()
  [ -n "${ALIGN2_FUZZ_SEED:-}" ] && extra+=(-seed="$ALIGN2_FUZZ_SEED")
  asan_options=$ASAN_OPTIONS
  if [ "$t" = shard ]; then
    # libhdf5 mallocs sizes read from a damaged file before checking them, and turns a NULL from
    # malloc (what glibc gives for impossible sizes) into an error that align2 reports. Let ASan
    # and libFuzzer return NULL too instead of stopping (docs/reliability.md, Fuzzing, finding 6);
    # fork mode goes on past libhdf5's endless loops and huge allocations (finding 8).
    extra+=(-malloc_limit_mb=1048576 -fork=1 -ignore_timeouts=1 -ignore_ooms=1 -ignore_crashes=1)
    asan_options=$ASAN_OPTIONS:allocator_may_return_null=1
  fi
  rc=0
  unknown=""
  ASAN_OPTIONS=$asan_options build-fuzz/bin/fuzz_"$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=25 -timeout_exitcode=70 -print_final_stats=1 "${extra[@]}" -artifact_prefix="$work/crash-$t/" \
    "$corpus" > "$log" 2>&1 || rc=$?
  if [ "$t" = shard ]; then
    # Fork mode ends with the last job's exit code (70: an ignored timeout, libhdf5's loop). What
    # decides is the crash inputs written: each is replayed, and only a crash inside libhdf5 is known.
    known=0
    unknown=""
    while IFS= read -r input; do
      replay=$work/replay-$(basename "$input").log
      if ASAN_OPTIONS=$asan_options timeout 120 build-fuzz/bin/fuzz_shard -runs=1 -timeout=25 -rss_limit_mb=2048 \
           -malloc_limit_mb=1048576 "$input" > "$replay" 2>&1; then
        continue  # does not fail alone
      fi
      if grep -q 'ERROR: libFuzzer: out-of-memory' "$replay"; then
        known=$((known + 1))  # libhdf5's huge allocations (findings 6, 8): align2 bounds every size it reads
      elif grep -q 'ERROR: libFuzzer: timeout' "$replay" && grep -q 'libhdf5' "$replay"; then
        known=$((known + 1))  # libhdf5's endless loop (finding 8): the stack is inside it
      elif grep -E '^ +#[0-3] ' "$replay" | grep -q 'libhdf5'; then
        known=$((known + 1))  # a crash inside libhdf5 (finding 9)
      else
        unknown=$input
        break
      fi
    done < <(find "$work/crash-$t" -type f)
    echo "fuzz.sh: fuzz_shard: $known crash, timeout or out-of-memory inputs inside libhdf5 (known, open)" >&2
    if [ -n "$unknown" ]; then
      grep -E "ERROR|SUMMARY|runtime error|#[0-9] " "$work/replay-$(basename "$unknown").log" | head -n 20 >&2 || true
      rc=1
    else
      rc=0
    fi
  fi
  if [ "$rc" != 0 ]; then
    crash=${unknown:-$(find "$work/crash-$t" -type f | head -n 1)}
    grep -E "ERROR|FINDING|SUMMARY|runtime error" "$log" | head -n 20 >&2 || true
    echo "fuzz.sh: fuzz_$t FAILED: crash input ${crash:-<none written>} (log $log)" >&2
    status=1
    break
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' ' >&2 || true
  echo "corpus: $(find "$corpus" -type f | wc -l) files" >&2
done
if [ "$status" = 0 ]; then
  echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s without a finding (work dir $work)" >&2
  [ -z "${ALIGN2_FUZZ_WORK:-}" ] && rm -rf "$work"
fi
exit "$status"
