#!/usr/bin/env bash
# Nightly refresh: submits a curate run of CONFIG into OUTPUT_ROOT/<date> (slurm/curate.sbatch)
# and a merge that runs once it succeeded (slurm/merge.sbatch, --dependency=afterok). For cron
# or scrontab (docs/slurm.md). Nothing here names a site path: the config, the output root and
# the environment say everything.
#
# Usage: slurm/nightly.sh CONFIG OUTPUT_ROOT
#   CONFIG                    the job config (made absolute)
#   OUTPUT_ROOT               the run goes to OUTPUT_ROOT/$ALIGN2_DATE (created), its logs too;
#                             every night shares the score cache OUTPUT_ROOT/score_cache
# Environment:
#   ALIGN2_BIN                the align2 binary (default: align2 on PATH; cron's PATH is short:
#                             give an absolute path)
#   ALIGN2_SBATCH_ARGS        sbatch options of the curate job, split at blanks, e.g.
#                             "--partition=gpu --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 --time=12:00:00"
#   ALIGN2_MERGE_SBATCH_ARGS  sbatch options of the merge job, e.g. "--partition=cpu"
#   ALIGN2_SET                more config overrides, one KEY=VALUE a line (score_cache=DIR
#                             moves the score cache)
#   ALIGN2_DATE               the run's folder name (default: today, date +%F)
# The curate job is named align2-nightly and submitted with --dependency=singleton: a run that
# is still going (or requeued) when the next night comes finishes first. Rerunning the script on
# the same day resumes that day's run. Prints the two job ids.
set -euo pipefail
if [ $# -ne 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
config=$(realpath -- "$1")
[ -f "$config" ] || { echo "nightly: no job config $config" >&2; exit 1; }
mkdir -p -- "$2"
root=$(realpath -- "$2")
out=$root/${ALIGN2_DATE:-$(date +%F)}
mkdir -p -- "$out"

sets="output_dir=$out"$'\n'"score_cache=$root/score_cache"
if [ -n "${ALIGN2_SET:-}" ]; then sets+=$'\n'"$ALIGN2_SET"; fi
# shellcheck disable=SC2086  # the sbatch options are meant to split at blanks
curate=$(ALIGN2_CONFIG=$config ALIGN2_SET=$sets \
  sbatch --parsable --job-name=align2-nightly --dependency=singleton --chdir="$out" \
    ${ALIGN2_SBATCH_ARGS:-} "$here/curate.sbatch")
curate=${curate%%;*}
# shellcheck disable=SC2086
merge=$(ALIGN2_OUTPUT_DIR=$out \
  sbatch --parsable --dependency="afterok:$curate" --kill-on-invalid-dep=yes --chdir="$out" \
    ${ALIGN2_MERGE_SBATCH_ARGS:-} "$here/merge.sbatch")
merge=${merge%%;*}
echo "nightly: $(date '+%F %T') curate job $curate, then merge job $merge; output $out" >&2
echo "$curate $merge"
