#!/usr/bin/env bash
# The main job on the bundled default data, on a fresh Debian 12 machine (as root):
# installs the packages, builds, and runs align2 on examples/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
data=examples/demo/data
echo "== align2 inspect on the bundled real LLaVA sample (${data})"
build/bin/align2 inspect --subset-field type --subset llava_instruct_60.json=conversation \
  "$data/llava_instruct_60.json" "$data/coco2014_val_gpt4_qa_30x3.jsonl"
