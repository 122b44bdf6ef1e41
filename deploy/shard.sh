#!/bin/sh
# One shard of a spatialsynth run, as a Slurm job-array task or a Kubernetes Indexed Job pod.
#
# Environment:
#   INPUTS        manifests or folders (space-separated), on storage every node sees
#   OUT           output folder on shared storage; this shard writes $OUT/shard-<i>
#   SHARDS        the number of shards (Kubernetes: the Job's `completions`; Slurm: taken from the array)
#   SPATIALSYNTH  the binary (default: spatialsynth on PATH)
#   EXTRA_ARGS    more options for `spatialsynth generate` (same on every shard: merge checks it)
#
# The shard index comes from the scheduler: SLURM_ARRAY_TASK_ID (submit with --array=0-(N-1)) or
# JOB_COMPLETION_INDEX (a Job with completionMode: Indexed). --resume makes a requeued, preempted or retried
# task continue from its last finished part. Frames that fail are recorded in the shard's failure lists and
# reported by `spatialsynth merge`; they do not fail the task (exit 1 of generate), so the scheduler does not
# retry a shard for bad input. Any other error does.
set -eu
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  INDEX=$SLURM_ARRAY_TASK_ID
  COUNT=${SLURM_ARRAY_TASK_COUNT:?Slurm did not set SLURM_ARRAY_TASK_COUNT}
  if [ "${SLURM_ARRAY_TASK_MIN:-0}" != 0 ] || [ "${SLURM_ARRAY_TASK_STEP:-1}" != 1 ] \
    || [ "${SLURM_ARRAY_TASK_MAX:-$((COUNT - 1))}" != "$((COUNT - 1))" ]; then
    echo "shard.sh: submit the array as --array=0-$((COUNT - 1))" >&2
    exit 2
  fi
elif [ -n "${JOB_COMPLETION_INDEX:-}" ]; then
  INDEX=$JOB_COMPLETION_INDEX
  COUNT=${SHARDS:?set SHARDS to the completions of the Indexed Job}
else
  echo "shard.sh: neither a Slurm array task (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)" >&2
  exit 2
fi
: "${INPUTS:?set INPUTS to the manifests}" "${OUT:?set OUT to the output folder}"
case "$COUNT" in
  '' | *[!0-9]* | 0) echo "shard.sh: the shard count must be a positive integer, got '$COUNT'" >&2; exit 2 ;;
esac
set +e -f
# shellcheck disable=SC2086 # INPUTS and EXTRA_ARGS are lists
"${SPATIALSYNTH:-spatialsynth}" generate $INPUTS -o "$OUT/shard-$INDEX" --shard "$INDEX/$COUNT" --resume --quiet ${EXTRA_ARGS:-}
rc=$?
if [ "$rc" -eq 1 ]; then
  echo "shard.sh: shard $INDEX/$COUNT done; some frames failed (listed by the merge)" >&2
  exit 0
fi
exit "$rc"
