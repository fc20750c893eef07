#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine (as root) installs the packages, builds, and runs
# align2 end to end on the bundled sample (examples/demo, see its README):
#   1. make-llava    a tiny LLaVA: the real trained stories260K LLaMA + a seeded CLIP + projector
#   2. pairs         reward-model preference pairs from the pool, negatives made by corruption
#   3. train-reward  the question and the answer reward model (LoRA), held-out accuracy
#   4. curate        the cascade over the real LLaVA records and bundled photos: two reward-model
#                    stages, then the inner LLM's rewrite and review of every kept turn,
#                    under mpirun (ALIGN2_DEMO_RANKS, default 2; 1 = a single process)
# Everything it makes goes to demo-out/ (not committed). A few minutes on 2 cores.
# ALIGN2_BIN=path/to/align2 skips the installation and the build and uses that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ALIGN2_BIN:-}" ]; then
  bash scripts/install-deps.sh
  bash scripts/build.sh
fi
bin=${ALIGN2_BIN:-build/bin/align2}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
demo=examples/demo
out=demo-out   # examples/demo/job.json names its models and output folder here
ranks=${ALIGN2_DEMO_RANKS:-2}
seed=${ALIGN2_DEMO_SEED:-1}
mkdir -p "$out"
rm -rf "$out/llava" "$out/pairs" "$out/rm-question" "$out/rm-answer" "$out/curate"
mkdir -p "$out/pairs"

timings=()
step_start=0
begin() {
  echo
  echo "== $1"
  step_start=$(date +%s%N)
}
end() {
  local ms=$((($(date +%s%N) - step_start) / 1000000))
  timings+=("$(printf '%-34s %6d.%01d s' "$1" $((ms / 1000)) $((ms % 1000 / 100)))")
}
show() { printf '$'; printf ' %q' "$@"; echo; "$@"; }

begin "0. the bundled pool and its images"
show "$bin" inspect --image-root "$demo/images" --subset-field type --subset llava_instruct_60.json=conversation \
  --max-examples 3 "$demo/data/llava_instruct_60.json" "$demo/data/coco2014_val_gpt4_qa_30x3.jsonl"
end "inspect"

begin "1. a tiny LLaVA from the real stories260K LLaMA (vision tower and projector freshly initialised)"
show "$bin" make-llava --llm "$demo/models/stories260K" --output-dir "$out/llava" --seed "$seed" --max-positions 2048
end "make-llava"

begin "2. preference pairs from the pool: real data (chosen) against corrupted copies or other records' text (rejected)"
pool="$demo/data/llava_instruct_60.json"
show "$bin" pairs --from-pool --kind question --input "$pool" --per-candidate 4 --holdout 0.2 --seed "$seed" \
  --out "$out/pairs/question_train.jsonl" --holdout-out "$out/pairs/question_eval.jsonl"
show "$bin" pairs --from-pool --kind answer --input "$pool" --holdout 0.2 --seed "$seed" \
  --out "$out/pairs/answer_train.jsonl" --holdout-out "$out/pairs/answer_eval.jsonl"
end "pairs (both kinds)"

# Tiny model: one thread per process is fastest (ATen's threads only add overhead at this size).
train() {
  local kind=$1 epochs=$2
  begin "3. train the $kind reward model (LoRA r 8, $epochs epoch(s); log in $out/rm-$kind.log)"
  local cmd=("$bin" train-reward --kind "$kind" --base "$out/llava" --image-root "$demo/images"
    --data "$out/pairs/${kind}_train.jsonl" --eval "$out/pairs/${kind}_eval.jsonl" --output-dir "$out/rm-$kind"
    --lora-r 8 --lora-alpha 16 --lora-dropout 0 --lr 5e-3 --epochs "$epochs" --batch-size 4 --pairs-per-step 4
    --augment-rate 0 --max-length 512
    --seed "$seed" --threads 1)
  printf '$'; printf ' %q' "${cmd[@]}"; echo " > $out/rm-$kind.log"
  "${cmd[@]}" > "$out/rm-$kind.log"
  tail -n 1 "$out/rm-$kind.log"
  end "train-reward --kind $kind"
}
train question 2
train answer 1

begin "4. curate the bundled sample (alpha 0.5, beta 0.5; then rewrite and review), $ranks rank(s)"
curate=("$bin" curate --config "$demo/job.json" --set "output_dir=$out/curate")
if [ "$ranks" -gt 1 ]; then
  curate=(mpirun -np "$ranks" --oversubscribe --bind-to none "${curate[@]}")
fi
show "${curate[@]}"
end "curate ($ranks rank(s))"

echo
echo "== timings"
printf '  %s\n' "${timings[@]}"
echo
echo "== done"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for kind in ("question", "answer"):
    e = json.load(open(f"{out}/rm-{kind}/eval.json"))
    print(f"{kind} RM: held-out pairwise accuracy {e['pairwise_accuracy']:.3f} on {e['pairs']} pairs "
          f"({out}/pairs/{kind}_eval.jsonl; chance is 0.5)")
s = json.load(open(f"{out}/curate/summary.json"))
print(f"curate: {s['input_records']} records in, {s['kept']} kept; per subset (kept / valid / input): " +
      ", ".join(f"{k} {v['kept']}/{v['valid']}/{v['input']}" for k, v in s["by_subset"].items()))
r = s["stages"].get("rewrite")
if r:
    reasons = ", ".join(f"{k} {v}" for k, v in r["turns"]["by_reason"].items()) or "none"
    print(f"rewrite: {r['attempted']} samples attempted: {r['kept_rewrite']} kept a rewrite, {r['kept_original']} kept "
          f"the original after review, {r['fallback']} fell back (turns by reason: {reasons})")
PY
echo "curated records (LLaVA JSON): $out/curate/curated.json"
echo "report:                       $out/curate/report.html"
echo "every score and decision:     $out/curate/scores.h5, counts in $out/curate/summary.json"
echo
echo "Note: the demo's models are tiny (a 260K-parameter story-writing LLaMA with an untrained"
echo "vision tower) and their reward models learned only to tell real records from corrupted ones"
echo "in a few seconds of training. Their choices are NOT meaningful quality judgements, and the"
echo "inner LLM writes children's stories, so its rewrites mostly fall back to the originals; the demo"
echo "shows the pipeline working end to end. For real curation, see docs/models.md and"
echo "docs/reward-models.md."
