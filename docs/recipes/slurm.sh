#!/usr/bin/env bash
# A pagelab sweep as a Slurm array job: array task K of N runs `pagelab compare ... --shard K/N` into
# $OUT/shard-K; a last job, started when every task has succeeded, merges the shards into $OUT/report.
#
#   jid=$(sbatch --parsable docs/recipes/slurm.sh)                                # the shards
#   sbatch --dependency=afterok:"$jid" --wrap "bash docs/recipes/slurm.sh merge"  # the merge
#
# Every shard must run the same sweep with the same pagelab version (merge checks both): pin the version
# in PAGELAB (e.g. "npx --yes pagelab@0.1.0") or install it once on the shared file system. $OUT must be
# on a file system every node sees. Change the array's size (--array=1-N) and nothing else: N is read
# from Slurm. pagelab's K is 1-based; the array may start anywhere but must be contiguous (--array=0-7
# works, --array=1-15:2 does not).
#
#SBATCH --job-name=pagelab-sweep
#SBATCH --array=1-8
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=02:00:00
#SBATCH --output=pagelab-sweep-%A_%a.out
set -euo pipefail

# The command that runs pagelab, split into words (tests set it to the checkout's bin/pagelab.mjs).
PAGELAB=${PAGELAB:-npx --yes pagelab}
# Where the shards and the report go.
OUT=${OUT:-pagelab-sweep}
# The sweep: every option that decides the runs, identical for every shard.
SWEEP=${SWEEP:---map corpus --pmm stack-pages,bitmap,buddy --kmap direct,recursive --workload page-churn}

if [ "${1:-}" = merge ]; then
  # shellcheck disable=SC2086 # PAGELAB is a command line, split on purpose
  exec $PAGELAB compare merge "$OUT"/shard-* --out "$OUT/report"
fi

: "${SLURM_ARRAY_TASK_ID:?run me with sbatch --array (or set SLURM_ARRAY_TASK_ID/MIN/COUNT)}"
K=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-1} + 1))
N=${SLURM_ARRAY_TASK_COUNT:-$((SLURM_ARRAY_TASK_MAX - ${SLURM_ARRAY_TASK_MIN:-1} + 1))}

mkdir -p "$OUT"
# shellcheck disable=SC2086 # PAGELAB and SWEEP are word lists, split on purpose
$PAGELAB compare $SWEEP --jobs "${SLURM_CPUS_PER_TASK:-1}" --shard "$K/$N" --out "$OUT/shard-$K"
