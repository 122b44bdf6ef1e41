#!/bin/sh
# Merges the shard folders $OUT/shard-* into the dataset $OUT/dataset (after every shard finished).
# `spatialsynth merge` refuses a missing or unfinished shard and shards of different runs; it exits 1 when frames
# failed (listed in $OUT/dataset/failures.jsonl).
set -eu
: "${OUT:?set OUT to the output folder of the shards}"
# shellcheck disable=SC2086 # the glob is the list of shard folders
exec "${SPATIALSYNTH:-spatialsynth}" merge "$OUT"/shard-* -o "$OUT/dataset"
