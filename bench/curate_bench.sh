#!/usr/bin/env bash
# End-to-end speed of `align2 curate` across ranks: samples/s with 1 and 2 ranks (one thread
# each) and each stage's rank busy-time imbalance (max / mean - 1). Goals: np=2 at least 1.9x
# np=1, imbalance at most 5 %. Numbers go to docs/performance.md.
#
# Uses the demo's models (demo-out/rm-question, demo-out/rm-answer: run scripts/demo.sh first)
# and a pool of COPIES x the demo's 150 real records, each copy's answers marked so that no
# record duplicates another (the reward models score every copy).
#   bash bench/curate_bench.sh [COPIES (default 8)] [BIN (default build/bin/align2)]
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-8}
bin=${2:-build/bin/align2}
unset OPENBLAS_CORETYPE   # benchmarks only (see docs/performance.md)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for rm in demo-out/rm-question demo-out/rm-answer; do
  [ -f "$rm/reward_config.json" ] || { echo "curate_bench: $rm is missing: run scripts/demo.sh first" >&2; exit 1; }
done
work=$(mktemp -d /tmp/align2-curate-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$copies" "$work" <<'EOF'
import json, sys
copies, work = int(sys.argv[1]), sys.argv[2]
records = json.load(open("examples/demo/data/llava_instruct_60.json"))
typed = [json.loads(l) for l in open("examples/demo/data/coco2014_val_gpt4_qa_30x3.jsonl") if l.strip()]
pool = []
for c in range(copies):
    for r in records:
        r = json.loads(json.dumps(r))
        r["id"] = f"{r['id']}-copy{c}"
        r["conversations"][-1]["value"] += f" (copy {c})"
        pool.append(r)
with open(f"{work}/pool.json", "w") as f:
    json.dump(pool, f)
with open(f"{work}/typed.jsonl", "w") as f:
    for c in range(copies):
        for r in typed:
            r = dict(r, id=f"{r['id']}-copy{c}", output=r["output"] + f" (copy {c})")
            f.write(json.dumps(r) + "\n")
EOF
cat > "$work/job.json" <<EOF
{
  "pools": ["$work/pool.json", "$work/typed.jsonl"],
  "subsets": {"pool.json": "conversation"},
  "subset_field": "type",
  "image_root": "$PWD/examples/demo/images",
  "question_model": "$PWD/demo-out/rm-question",
  "answer_model": "$PWD/demo-out/rm-answer",
  "alpha": 0.5, "beta": 0.5, "one_per_image": false, "image_cost": 49,
  "batch_size": 8, "threads": 1, "progress_seconds": 0, "rewrite_max_new_tokens": 32
}
EOF

run() {  # run NP: prints wall seconds
  local np=$1 out="$work/np$1" t0 t1
  t0=$(date +%s%N)
  if [ "$np" -eq 1 ]; then
    "$bin" curate --config "$work/job.json" --set "output_dir=$out" > "$work/np$np.log" 2>&1
  else
    mpirun -np "$np" --oversubscribe --bind-to core "$bin" curate --config "$work/job.json" \
      --set "output_dir=$out" > "$work/np$np.log" 2>&1
  fi
  t1=$(date +%s%N)
  echo "$(((t1 - t0) / 1000000))"  # milliseconds
}
wall1=$(run 1)
wall2=$(run 2)
cmp -s "$work/np1/curated.json" "$work/np2/curated.json" || { echo "curate_bench: np1 and np2 differ" >&2; exit 1; }

/usr/bin/python3 - "$work" "$wall1" "$wall2" <<'EOF'
import json, sys
work, wall1, wall2 = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000
def load(np):
    return json.load(open(f"{work}/np{np}/summary.json"))
s1, s2 = load(1), load(2)
n = s1["input_records"]
print(f"pool: {n} records, {s1['stages']['select_answers']['input']} reach stage 2, {s1['kept']} kept and rewritten "
      f"(at most 32 new tokens a turn)")
print(f"end to end (process start to outputs written): np1 {n / wall1:.1f} samples/s, np2 {n / wall2:.1f} samples/s, "
      f"speed-up {wall1 / wall2:.2f}x (goal >= 1.9x)")
for stage in ("select_questions", "select_answers", "rewrite"):
    busy1 = sum(r["busy_s"] for r in s1["timings"][stage]["per_rank"])
    ranks = s2["timings"][stage]["per_rank"]
    busy = [r["busy_s"] for r in ranks]
    mean = sum(busy) / len(busy)
    wall = ranks[0].get("wall_s", max(busy))
    print(f"{stage}: np2 busy per rank {', '.join(f'{b:.2f}' for b in busy)} s, imbalance {100 * (max(busy) / mean - 1):.1f} % "
          f"(goal <= 5 %); stage speed-up {busy1 / wall:.2f}x")
EOF
