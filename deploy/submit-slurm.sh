#!/bin/bash
# Usage: submit-slurm.sh SHARDS OUT INPUT...
# Queues SHARDS array tasks (one shard each, see shard.sh) and the merge, which runs after all of them
# (afterany: the merge itself refuses unfinished shards). Prints the two job ids. SPATIALSYNTH (the binary) and
# EXTRA_ARGS (more `generate` options), when exported, reach every task.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 SHARDS OUT INPUT..." >&2
  exit 2
fi
SHARDS=$1
OUT=$2
shift 2
INPUTS="$*"
SPATIALSYNTH_DEPLOY=$(cd "$(dirname "$0")" && pwd)
export SHARDS OUT INPUTS SPATIALSYNTH_DEPLOY
mkdir -p "$OUT/logs"
array=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" --output="$OUT/logs/shard-%A_%a.out" \
  "$SPATIALSYNTH_DEPLOY/slurm.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency="afterany:${array%%;*}" --output="$OUT/logs/merge-%j.out" \
  "$SPATIALSYNTH_DEPLOY/slurm-merge.sbatch")
echo "shards: job $array; merge: job $merge; dataset: $OUT/dataset"
