#!/usr/bin/env bash
# Every GPU of one machine, without a scheduler: one shard per GPU, all at once, each with only its GPU visible
# (CUDA_VISIBLE_DEVICES) and its share of the cores (shard.sh), then the merge (merge.sh) into OUT/dataset.
#
# usage: deploy/gpus.sh OUT INPUT...
#
# Environment:
#   GPUS          the GPUs, comma-separated, as CUDA_VISIBLE_DEVICES takes them (indices, GPU-/MIG- UUIDs); default:
#                 CUDA_VISIBLE_DEVICES when it is set, else every GPU that `nvidia-smi -L` lists
#   BACKEND       the geometry backend of every shard (default cuda)
#   THREADS       worker threads per shard, and ONNX Runtime threads per model (default: the cores shared out among
#                 the GPUs, at least 1)
#   SPATIALSYNTH  the binary (default: spatialsynth on PATH)
#   EXTRA_ARGS    more options for `spatialsynth generate` (the same for every shard: merge checks it)
#
# Each shard's output goes to OUT/shard-<i>.log. Run the same command again after an interruption: every shard
# resumes from its last finished part (--resume) and finished shards only check their parts. Exit 0 when the dataset
# is written (frames that failed are listed in OUT/dataset/failures.jsonl), 2 when a shard or the merge failed.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: deploy/gpus.sh OUT INPUT..." >&2
  exit 2
fi
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
gpus=${GPUS:-${CUDA_VISIBLE_DEVICES:-}}
if [ -z "$gpus" ]; then
  if ! command -v nvidia-smi > /dev/null; then
    echo "gpus.sh: nvidia-smi is not on the PATH; set GPUS to the GPUs to use (for example GPUS=0,1)" >&2
    exit 2
  fi
  gpus=$(nvidia-smi -L | sed -n 's/^GPU \([0-9][0-9]*\):.*/\1/p' | paste -sd, -)
fi
IFS=, read -r -a list <<< "$gpus"
n=${#list[@]}
if [ "$n" -eq 0 ]; then
  echo "gpus.sh: no GPU found (nvidia-smi -L lists none); set GPUS" >&2
  exit 2
fi
cores=$(nproc)
threads=${THREADS:-$((cores / n > 0 ? cores / n : 1))}
mkdir -p "$out"
pids=()
for i in "${!list[@]}"; do
  CUDA_VISIBLE_DEVICES=${list[$i]} JOB_COMPLETION_INDEX=$i SHARDS=$n INPUTS="$*" OUT=$out \
    EXTRA_ARGS="--backend ${BACKEND:-cuda} --threads $threads --model-threads $threads ${EXTRA_ARGS:-}" \
    "$here/shard.sh" > "$out/shard-$i.log" 2>&1 &
  pids+=($!)
done
echo "gpus.sh: $n shards on GPUs $gpus, $threads threads each; logs in $out/shard-<i>.log" >&2
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "gpus.sh: shard $i (GPU ${list[$i]}) failed: $out/shard-$i.log says why; run again to resume" >&2
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  exit 2
fi
OUT=$out SHARDS=$n "$here/merge.sh"
