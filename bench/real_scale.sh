#!/usr/bin/env bash
# Real-scale CPU check of `align2 curate` (not a CI test): a random LLaVA-1.5-7B in the llava-hf
# layout and two LoRA reward models on it (bench/make_random_llava.py: r 128 adapters in BF16, as
# the authors' would be), a pool of 4 bundled records with their photos, then all three stages in
# bf16 under `mpirun -np 1 --bind-to none` (rewrite on, the llava-hf base as rewriter, 32 new tokens a turn).
# Prints peak RSS against 1.1 x the base's bf16 weights + 2 GiB, and each stage's seconds and
# FLOP/s against this machine's bf16 matmul peak, measured in the same run.
#
#   bash bench/real_scale.sh [WORK_DIR (default /tmp/align2-real-scale)] [BIN (default build/bin/align2)]
#
# Environment:
#   TOKENIZER        LLaMA tokenizer.model for the random model (default /work/shared/tokenizers/llama/tokenizer.model)
#   TINY=1           tiny shapes for a smoke test (LLM hidden 64, 2 layers; CLIP hidden 32, 2 layers; LoRA r 8)
#   MODEL_FLAGS      make_random_llava.py `base` shape flags (default: none = LLaVA-1.5-7B; TINY sets them)
#   RM_FLAGS         make_random_llava.py `reward-model` flags (default: none = r 128, alpha 256; TINY: --lora-r 8)
#   THREADS          threads of align2 and of the peak measurement (default: nproc)
#   MAX_NEW_TOKENS   rewrite_max_new_tokens (default 32)
#   RECORDS, ALPHA, BETA   pool size and the stages' fractions (default 4, 0.5, 0.5: 4 -> 2 -> 1);
#                    RECORDS=1 ALPHA=1 BETA=1 is the shortest run through all three stages
#   PEAK_BENCH       the binary that prints the matmul peaks (default: linear_rows_bench beside BIN)
#   PYTHON           a python3 with numpy and h5py (default /usr/bin/python3)
# The models are written once into WORK_DIR (about 15 GiB at the 7B shape: 13.2 GiB base + 2 x 0.6 GiB
# adapters) and reused while their flags are unchanged; each run starts the curate output over.
# Exits non-zero when align2 fails (its log's tail is printed).
#
# FLOPs (multiply-adds x 2; the formulas of docs/performance.md):
#   LLM forward of T positions: 2 * P * T + 4 * L * T^2 * H, where P = L * (2*H*H + 2*H*Hkv + 3*H*I) are the
#     linear weights of the L layers (hidden H, k/v width Hkv, MLP width I); a reward model reads the
#     final norm at the last position (no lm_head). T = BOS + 576 image positions + the text tokens
#     after the <image> tag (align2 tokenize), capped at max_length 2048.
#   Vision tower per image: 2 * Lr * (4*Hv^2 + 2*Hv*Iv) * (N+1) + 4 * Lr * (N+1)^2 * Hv + 2 * 3*p^2*Hv * N
#     (Lr = layers run: vision_feature_layer -2 runs Lv - 1; N = (image/p)^2 patches), plus the projector
#     2 * (Hv*H + H*H) * N. One image per sample and stage (stage 2 encodes it once for all turns).
#   Stage 1: one forward per sample (every question). Stage 2: one forward per (question, answer) turn.
#   Stage 3: 2 * P * (prompt + generated tokens) + 4 * L * H * Tm * (prompt + generated) with Tm the mean
#     sequence length (prompt tokens / sequences: one per rewritten turn, four per reviewed turn), plus the
#     lm_head 2 * H * V per generated token; token counts from summary.json timings.rewrite.
#   Each stage's FLOP/s is FLOPs / (its wall seconds (summary.json timings, the slowest rank) less its
#   model's load, from align2's "loaded in S s" line) and is divided by the bf16 and the fp32 matmul
#   peaks (2048^3 at::matmul, bench/machine_limits.h) that PEAK_BENCH prints. On CPUs without AVX-512
#   BF16 or AMX the engine computes bf16 products in float32 (dense_linear), so the fp32 peak applies.
set -euo pipefail

here=$PWD
cd "$(dirname "$0")/.."
repo=$PWD
work=$(cd "$here" && realpath -m -- "${1:-/tmp/align2-real-scale}")
if [ $# -ge 2 ]; then bin=$(cd "$here" && realpath -m -- "$2"); else bin=$repo/build/bin/align2; fi
py=${PYTHON:-/usr/bin/python3}
tokenizer=${TOKENIZER:-/work/shared/tokenizers/llama/tokenizer.model}
threads=${THREADS:-$(nproc)}
max_new=${MAX_NEW_TOKENS:-32}
records=${RECORDS:-4} alpha=${ALPHA:-0.5} beta=${BETA:-0.5}
peak_bench=${PEAK_BENCH:-$(dirname "$bin")/linear_rows_bench}
if [ "${TINY:-0}" = 1 ]; then
  tiny="--hidden 64 --intermediate 128 --layers 2 --heads 4"
  tiny+=" --vision-hidden 32 --vision-intermediate 64 --vision-layers 2 --vision-heads 2"  # 336 px, patch 14 kept
  model_flags=${MODEL_FLAGS:-$tiny}
  rm_flags=${RM_FLAGS:---lora-r 8 --lora-alpha 16}
else
  model_flags=${MODEL_FLAGS:-}
  rm_flags=${RM_FLAGS:-}
fi
[ -x "$bin" ] || { echo "real_scale: $bin is not an executable (build align2 first)" >&2; exit 1; }
[ -f "$tokenizer" ] || { echo "real_scale: tokenizer $tokenizer not found (set TOKENIZER)" >&2; exit 1; }
"$py" -c "import numpy, h5py" || { echo "real_scale: $py lacks numpy or h5py (set PYTHON)" >&2; exit 1; }
mkdir -p "$work"
base=$work/llava-1.5-7b-hf

# --- models: written once, reused while the command that wrote them is the same -------------------
made() {  # made NAME DEPENDS COMMAND...: runs COMMAND unless WORK_DIR/NAME.made-by records this DEPENDS and COMMAND
  local name=$1 stamp="${2:+$2 | }${*:3}"
  shift 2
  if [ -d "$work/$name" ] && [ -f "$work/$name.made-by" ] && [ "$(cat "$work/$name.made-by")" = "$stamp" ]; then
    echo "reusing $work/$name"
    return
  fi
  rm -f -- "$work/$name.made-by"
  rm -rf -- "${work:?}/$name"
  "$@"
  echo "$stamp" > "$work/$name.made-by"
}
# shellcheck disable=SC2086  # the flags are word lists
made llava-1.5-7b-hf "" "$py" bench/make_random_llava.py base "$base" --tokenizer "$tokenizer" $model_flags
for kind in question answer; do
  # The base's command line is part of the stamp: a new base makes new reward models.
  # shellcheck disable=SC2086
  made "rm-$kind" "$(cat "$work/llava-1.5-7b-hf.made-by")" \
    "$py" bench/make_random_llava.py reward-model "$work/rm-$kind" --base "$base" --kind "$kind" $rm_flags
done

# --- pool and job ---------------------------------------------------------------------------------
# The first 4 one-turn records with distinct images of the demo's GPT-4 QA sample (the
# {"instruction", "output"} form, real COCO photos under examples/demo/images): one sequence per
# record and stage, to keep the 7B check short. One subset of 4:
# alpha 0.5 keeps 2 for stage 2, beta 0.5 keeps 1, whose turn stage 3 rewrites and reviews.
"$py" - "$work/pool.jsonl" "$records" <<'EOF'
import json, sys
records, seen = [], set()
for line in open("examples/demo/data/coco2014_val_gpt4_qa_30x3.jsonl"):
    r = json.loads(line)
    if r["image"] not in seen and len(records) < int(sys.argv[2]):
        seen.add(r["image"])
        records.append(r)
with open(sys.argv[1], "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
EOF
cat > "$work/job.json" <<EOF
{
  "pools": ["$work/pool.jsonl"],
  "image_root": "$repo/examples/demo/images",
  "output_dir": "$work/curate",
  "question_model": "$work/rm-question",
  "answer_model": "$work/rm-answer",
  "dtype": "bf16",
  "alpha": $alpha,
  "beta": $beta,
  "one_per_image": true,
  "threads": $threads,
  "progress_seconds": 30,
  "rewrite": true,
  "rewrite_model": "$base",
  "rewrite_max_new_tokens": $max_new
}
EOF

# --- this machine: CPU and bf16 matmul peak (same run, idle machine, before align2) ---------------
unset SLURM_CONF OPENBLAS_CORETYPE OPENBLAS_L2_SIZE   # benchmarks only (docs/performance.md)
# Background commands of a script ignore SIGINT: stop the ones started here on an interrupt.
bench_pid='' run_pid=''
trap 'kill $bench_pid $run_pid 2>/dev/null; exit 130' INT TERM
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { case " ${cpu_flags#*:} " in *" $1 "*) echo "$1 yes" ;; *) echo "$1 no" ;; esac; }
cpu_line="cpu: $cpu_model, $(nproc) cores; $(has avx2), $(has avx512f), $(has avx512_bf16), $(has amx_bf16),"
cpu_line+=" $(has amx_tile)"
peak_line="no peak: $peak_bench not found"
if [ -x "$peak_bench" ]; then
  # Its first line holds the peaks; the rest (its Linear-layer sweep) is not needed: stop it there.
  : > "$work/peak.txt"  # emptied before the bench starts: the loop below must not read an old run's line
  stdbuf -oL "$peak_bench" "$threads" > "$work/peak.txt" 2>&1 &
  bench_pid=$!
  while kill -0 "$bench_pid" 2>/dev/null && ! grep -q "matmul peak" "$work/peak.txt"; do sleep 0.2; done
  kill "$bench_pid" 2>/dev/null || true
  wait "$bench_pid" 2>/dev/null || true
  peak_line=$(grep -m1 "matmul peak" "$work/peak.txt" || echo "no peak: $peak_bench printed none")
fi
echo "$cpu_line"
echo "$peak_line"
case "$cpu_flags" in
  *avx512_bf16* | *amx_bf16*) ;;
  *) echo "note: no avx512_bf16 / amx_bf16 here: ATen's bf16 matmul runs far below fp32 (the two peaks above), so" \
       "align2 computes its bf16 dense products in float32 on such a CPU: compare with the fp32 peak" ;;
esac

# --- the run ----------------------------------------------------------------------------------------
rm -rf -- "${work:?}/curate"
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -v -o "$work/time.txt"); else rm -f "$work/time.txt"; fi
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done; }
: > "$work/curate.log"  # exists before tail opens it
t0=$(date +%s.%N)
# --bind-to none: Open MPI binds a lone rank to one core by default, and align2 runs $threads threads.
mpirun -np 1 --bind-to none "${timer[@]}" "$bin" curate --config "$work/job.json" > "$work/curate.log" 2>&1 &
run_pid=$!
tail -n +1 -f --pid="$run_pid" "$work/curate.log" &
hwm_kb=0  # VmHWM of align2, polled: the fallback when /usr/bin/time is missing
while kill -0 "$run_pid" 2>/dev/null; do
  for c in $(descendants "$run_pid"); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = align2 ] || continue
    kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$c/status" 2>/dev/null || true)
    [ -n "$kb" ] && [ "$kb" -gt "$hwm_kb" ] && hwm_kb=$kb
  done
  sleep 0.5
done
rc=0
wait "$run_pid" || rc=$?
t1=$(date +%s.%N)
sleep 0.3  # let tail print the last lines
if [ "$rc" -ne 0 ]; then
  echo "real_scale: align2 curate failed (exit $rc); $work/curate.log ends:" >&2
  tail -n 20 "$work/curate.log" >&2
  exit "$rc"
fi
rss_kb=$hwm_kb
rss_from="VmHWM polled"
if [ -f "$work/time.txt" ]; then
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  rss_from="/usr/bin/time -v"
fi

# --- report -----------------------------------------------------------------------------------------
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
"$py" - "$work" "$base" "$bin" "$rss_kb" "$rss_from" "$wall" "$peak_line" "$threads" "$max_new" <<'EOF'
import json, math, os, re, struct, subprocess, sys
import h5py
import numpy as np

work, base, binary, rss_kb, rss_from, wall, peak_line, threads, max_new = sys.argv[1:]
GiB = 1 << 30

# Model shape and parameters (from the checkpoint's headers).
config = json.load(open(os.path.join(base, "config.json")))
text, vision = config.get("text_config", {}), config.get("vision_config", {})
H = text.get("hidden_size", 4096)
I = text.get("intermediate_size", 11008)
L = text.get("num_hidden_layers", 32)
heads = text.get("num_attention_heads", 32)
Hkv = (text.get("num_key_value_heads") or heads) * (text.get("head_dim") or H // heads)
V = text.get("vocab_size", 32000)
Hv, Iv, Lv = vision.get("hidden_size", 1024), vision.get("intermediate_size", 4096), vision.get("num_hidden_layers", 24)
p, image = vision.get("patch_size", 14), vision.get("image_size", 336)
select = config.get("vision_feature_layer", -2)
Lr = Lv + 1 + select if select < 0 else select                     # vision layers run
N = (image // p) ** 2                                              # patches = image positions
default = config.get("vision_feature_select_strategy", "default") == "default"
image_positions = N if default else N + 1                          # the CLS position dropped or kept
P = L * (2 * H * H + 2 * H * Hkv + 3 * H * I)                      # LLM linear weights

params = {"llm": 0, "vision": 0, "projector": 0}
index = json.load(open(os.path.join(base, "model.safetensors.index.json")))
for shard in sorted(set(index["weight_map"].values())):
    with open(os.path.join(base, shard), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    for name, t in header.items():
        if name == "__metadata__":
            continue
        part = "vision" if "vision_tower" in name else "projector" if "multi_modal_projector" in name else "llm"
        params[part] += math.prod(t["shape"])
weights_bf16 = 2 * sum(params.values())
limit = 1.1 * weights_bf16 + 2 * GiB
rss = int(rss_kb) * 1024

def llm_flops(T):
    return 2 * P * T + 4 * L * T * T * H

vision_flops = (2 * Lr * (4 * Hv * Hv + 2 * Hv * Iv) * (N + 1) + 4 * Lr * (N + 1) ** 2 * Hv + 2 * 3 * p * p * Hv * N
                + 2 * (Hv * H + H * H) * N)

# What each stage scored, from scores.h5, and the texts the reward models read (core/reward/reward_text.h).
def clean(s):
    return s.replace("<image>", "").strip()

def turns(record):
    if "conversations" in record:
        c = record["conversations"]
        return [(c[k]["value"], c[k + 1]["value"]) for k in range(0, len(c) - 1, 2)
                if c[k]["from"] == "human" and c[k + 1]["from"] == "gpt"]
    return [(record["instruction"], record["output"])]

h5 = h5py.File(os.path.join(work, "curate", "scores.h5"), "r")
records = [json.loads(r) for r in h5["record"].asstr()[:]]
images = [bool(s) for s in h5["image"].asstr()[:]]
q_scored = ~np.isnan(h5["question_score"][:])
a_off, rw_off = h5["answer_scores_offsets"][:], h5["rewritten_offsets"][:]
reasons = list(h5["rewrite_reasons"].asstr()[:])
reviewed = int(np.sum(~np.isnan(h5["review_p"][:])))

texts, owners = [], []   # (text after the <image> tag, or the whole text without one), (stage, has image)
for i, r in enumerate(records):
    if q_scored[i]:
        texts.append("\n".join(clean(q) for q, _ in turns(r)).strip())
        owners.append(("select_questions", images[i]))
    n = int(a_off[i + 1] - a_off[i])
    if n:
        if n != len(turns(r)):
            print(f"warning: record {i} has {len(turns(r))} turns here, {n} answer scores in scores.h5")
        for q, a in turns(r)[:n]:
            texts.append(f"Question: {clean(q)}\nAnswer: {clean(a)}".strip())
            owners.append(("select_answers", images[i]))
jsonl = os.path.join(work, "rm_texts.jsonl")
with open(jsonl, "w") as f:
    for t, (_, img) in zip(texts, owners):
        f.write(json.dumps({"text": "\n" + t if img else t}) + "\n")
ids = subprocess.run([binary, "tokenize", "--no-bos", "--tokenizer", os.path.join(base, "tokenizer.model"),
                      "--input", jsonl], check=True, capture_output=True, text=True).stdout.splitlines()
stages = {s: {"flops": 0.0, "tokens": 0, "sequences": 0, "images": 0}
          for s in ("select_questions", "select_answers", "rewrite")}
for line, (stage, img) in zip(ids, owners):
    T = min(1 + len(json.loads(line)["ids"]) + (image_positions if img else 0), 2048)  # BOS + image + text
    stages[stage]["flops"] += llm_flops(T)
    stages[stage]["tokens"] += T
    stages[stage]["sequences"] += 1
for i in range(len(records)):
    stages["select_questions"]["images"] += int(q_scored[i] and images[i])
    stages["select_answers"]["images"] += int(a_off[i + 1] > a_off[i] and images[i])
    stages["rewrite"]["images"] += int(rw_off[i + 1] > rw_off[i] and images[i])
for s in ("select_questions", "select_answers"):
    stages[s]["flops"] += stages[s]["images"] * vision_flops

summary = json.load(open(os.path.join(work, "curate", "summary.json")))
timing = summary["timings"]
rw = timing.get("rewrite", {}).get("per_rank", [])
prompt, generated = sum(r.get("prompt_tokens", 0) for r in rw), sum(r.get("generated_tokens", 0) for r in rw)
generations = sum(1 for x in reasons if x != "bad_image")
seqs = generations + 4 * reviewed
Tm = prompt / seqs if seqs else 0
s3 = stages["rewrite"]
s3["tokens"], s3["sequences"] = prompt + generated, seqs
s3["flops"] = (2 * P * (prompt + generated) + 4 * L * H * Tm * (prompt + generated) + 2 * H * V * generated
               + s3["images"] * vision_flops)

m = re.search(r"bf16 ([\d.]+) GFLOP/s", peak_line)
peak = float(m.group(1)) * 1e9 if m else None
m32 = re.search(r"fp32 ([\d.]+) GFLOP/s", peak_line)
peak32 = float(m32.group(1)) * 1e9 if m32 else None
# Each stage's first call loads its model; align2 logs "align2: <model> loaded in S s" (one line a
# stage, in stage order: question RM, answer RM, rewrite model). Scoring rates leave the load out.
loads = [float(x) for x in re.findall(r"loaded in ([\d.]+) s", open(os.path.join(work, "curate.log")).read())]
load_of = dict(zip(("select_questions", "select_answers", "rewrite"), loads))

st = summary["stages"]
print()
print(f"align2 real-scale check: {work}")
print(f"model: random llava-hf, LLM {params['llm'] / 1e9:.3f} G + vision {params['vision'] / 1e9:.3f} G + projector "
      f"{params['projector'] / 1e9:.3f} G parameters = {weights_bf16 / GiB:.2f} GiB in bf16 "
      f"(H {H}, I {I}, {L} layers, vocab {V}; CLIP {Hv}/{Iv}, {Lv} layers, {image} px / {p} = {N} patches)")
print(f"run: align2 curate, dtype bf16, mpirun -np 1 --bind-to none, {threads} threads; "
      f"rewrite_max_new_tokens {max_new}; "
      f"{summary['input_records']} records -> stage 1 kept {st['select_questions']['kept']} -> stage 2 kept "
      f"{st['select_answers']['kept']} -> stage 3 {st.get('rewrite', {}).get('turns', {}).get('attempted', 0)} turns")
print(peak_line if m else f"bf16 peak: not measured ({peak_line})")
print()
verdict = "within" if rss <= limit else "OVER"
print(f"{'peak RSS':<22}{rss / GiB:9.2f} GiB   ({rss_from}; limit 1.1 x {weights_bf16 / GiB:.2f} + 2 = "
      f"{limit / GiB:.2f} GiB: {verdict})")
print(f"{'wall (mpirun)':<22}{float(wall):9.1f} s")
print()
# Without AVX-512 BF16 / AMX, align2 widens bf16 operands to float32 for its dense products
# (core/engine/llama_model.h dense_linear): the fp32 peak is then the bound that applies.
print(f"{'stage':<18}{'seconds':>9}{'load s':>8}{'sequences':>11}{'tokens':>9}{'images':>8}{'GFLOP':>11}"
      f"{'GFLOP/s':>10}{'/ bf16 peak':>13}{'/ fp32 peak':>13}")
for s, v in stages.items():
    ranks = timing.get(s, {}).get("per_rank", [])
    secs = max((r.get("wall_s", r.get("busy_s", 0)) for r in ranks), default=0)
    load = load_of.get(s, 0.0)
    busy = secs - load  # scoring (or rewriting) alone
    rate = v["flops"] / busy if busy > 0 else float("nan")
    ratio = f"{100 * rate / peak:12.1f}%" if peak and busy > 0 else f"{'n/a':>13}"
    ratio32 = f"{100 * rate / peak32:12.1f}%" if peak32 and busy > 0 else f"{'n/a':>13}"
    print(f"{s:<18}{secs:9.2f}{load:8.1f}{v['sequences']:11d}{v['tokens']:9d}{v['images']:8d}{v['flops'] / 1e9:11.1f}"
          f"{rate / 1e9:10.1f}{ratio}{ratio32}")
print("GFLOP/s: the stage's FLOPs over its seconds less its model's load")
EOF
