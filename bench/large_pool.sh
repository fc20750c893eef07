#!/usr/bin/env bash
# A synthetic pool of 10M records (not in CI): what ingest and the curate data plane cost at the
# size of today's instruction collections. Numbers go to docs/performance.md ("Large pool").
#   1. make_large_pool.py writes RECORDS records (default 10,000,000) from the bundled real ones,
#      each with its own id and varied text, in 8 files (4 JSON arrays, 4 JSONL), with repeats,
#      missing images and cut-short lines at fixed rates; and two subset files of the same kinds.
#   2. index_bench --pool, under mpirun -np RANKS (default 2): the one-rank index (MB/s, phase
#      shares), share_index on every rank as `curate` builds it (MB/s, identical or not), each
#      rank's peak RSS, the index's bytes per record, a full read-back.
#   3. `align2 curate` under mpirun -np RANKS on the subset files (SUBSET records each, default
#      2,000) with the demo's reward models (make-llava on the real stories260K LLaMA: run
#      scripts/demo.sh first): stages 1-3 and the merge, alpha = beta = 0.3, one_per_image off,
#      each rank's peak RSS.
#   bash bench/large_pool.sh [RECORDS] [SUBSET] [RANKS]
# Needs about 1.4 KB of disk per record under $LARGE_POOL_DIR (default /tmp/align2-large-pool,
# removed at the end unless LARGE_POOL_KEEP=1). BIN=path/to/build/bin overrides the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-10000000}
subset=${2:-2000}
ranks=${3:-2}
bin=${BIN:-build/bin}
work=${LARGE_POOL_DIR:-/tmp/align2-large-pool}
unset OPENBLAS_CORETYPE   # benchmarks only (see docs/performance.md)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for rm in demo-out/rm-question demo-out/rm-answer; do
  [ -f "$rm/reward_config.json" ] || { echo "large_pool: $rm is missing: run scripts/demo.sh first" >&2; exit 1; }
done
for b in align2 index_bench; do
  [ -x "$bin/$b" ] || { echo "large_pool: $bin/$b is missing: build first (scripts/build.sh)" >&2; exit 1; }
done
need_kb=$((records * 14 / 10 + 1048576))
free_kb=$(df -Pk "$(dirname "$work")" | awk 'NR == 2 { print $4 }')
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "large_pool: $records records need about $((need_kb / 1048576)) GiB under $(dirname "$work");" \
       "$((free_kb / 1048576)) GiB are free" >&2
  exit 1
fi
rm -rf "$work"
mkdir -p "$work"
[ "${LARGE_POOL_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
secs() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) threads"
echo "== 1. generate $records records (+ $subset per subset file)"
t0=$(date +%s%N)
python3 bench/make_large_pool.py --records "$records" --files 8 --subset "$subset" --out "$work/pool" \
  > "$work/files.txt"
awk '/pool-/ { n += $2; b += $3 } END { printf "pool: %d records, %.2f GB, %.0f bytes/record\n", n, b / 1e9, b / n }' \
  "$work/files.txt"
echo "generated in $(secs "$t0") s"

echo "== 2. index ($ranks ranks)"
mpirun -np "$ranks" --bind-to none "$bin/index_bench" --pool "$work"/pool/pool-*.json* \
  --image-root "$PWD/examples/demo/images" --subset-field type

echo "== 3. curate $((2 * subset)) records ($ranks ranks)"
cat > "$work/job.json" <<EOF
{
  "pools": ["$work/pool/subset-00.json", "$work/pool/subset-01.jsonl"],
  "subsets": {"subset-00.json": "conversation"},
  "subset_field": "type",
  "image_root": "$PWD/examples/demo/images",
  "question_model": "$PWD/demo-out/rm-question",
  "answer_model": "$PWD/demo-out/rm-answer",
  "output_dir": "$work/curate",
  "alpha": 0.3, "beta": 0.3, "one_per_image": false, "image_cost": 49,
  "batch_size": 8, "threads": 1, "progress_seconds": 0, "rewrite_max_new_tokens": 32
}
EOF
t0=$(date +%s%N)
# Each rank's peak RSS (KB, ru_maxrss of the rank's process) to curate-rss.<rank>.
mpirun -np "$ranks" --bind-to none python3 -c '
import os, resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1] + "." + os.environ["OMPI_COMM_WORLD_RANK"], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + "\n")
sys.exit(rc)' "$work/curate-rss" \
  "$bin/align2" curate --config "$work/job.json" > "$work/curate.log" 2>&1 \
  || { tail -n 30 "$work/curate.log" >&2; exit 1; }
echo "curate (index, stages 1-3, merge): $(secs "$t0") s wall"
for r in $(seq 0 $((ranks - 1))); do
  echo "  rank $r peak RSS $(($(tail -n 1 "$work/curate-rss.$r") / 1024)) MB"
done
python3 - "$work/curate/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("summary:", json.dumps({k: s[k] for k in s if k in ("by_status", "kept", "timings")})[:1500])
EOF
