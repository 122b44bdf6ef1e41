#!/bin/sh
# Merges the shard folders $OUT/shard-0 ... $OUT/shard-(SHARDS-1) into the dataset $OUT/dataset, after every shard
# finished. `spatialsynth merge` refuses a missing or unfinished shard and shards of different runs (exit 2). When
# frames failed it still writes the dataset, lists them in $OUT/dataset/failures.jsonl and exits 1; this script
# reports that and exits 0, so that the scheduler does not retry the merge for bad input.
set -eu
: "${OUT:?set OUT to the output folder of the shards}"
case "${SHARDS:-}" in
  '' | *[!0-9]* | 0) echo "merge.sh: set SHARDS to the number of shards (a positive integer)" >&2; exit 2 ;;
esac
set --
i=0
while [ "$i" -lt "$SHARDS" ]; do
  set -- "$@" "$OUT/shard-$i"
  i=$((i + 1))
done
set +e
"${SPATIALSYNTH:-spatialsynth}" merge "$@" -o "$OUT/dataset"
rc=$?
if [ "$rc" -eq 1 ]; then
  echo "merge.sh: dataset written to $OUT/dataset; some frames failed (listed in $OUT/dataset/failures.jsonl)" >&2
  exit 0
fi
exit "$rc"
