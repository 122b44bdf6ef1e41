#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's table of page-locked memory under limits (fifteenth session of 2026-12-07): the 20 frames
# of scripts/emulator-counts.sh (10 objects each, scripts/grid-box-manifest.py) through `spatialsynth scene --backend
# cuda --threads 2` on the CPU emulator of CUDA, once per limit (--pinned-limit-mib: none, 64, 32, 16, 0) and once
# with the emulated driver refusing to pin past 24 MiB (SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT). One line per run: from
# run.json's `pinned_memory`, buffers pinned, the peak, refusals (by the limit, by the driver) and the copies through
# pageable memory; from the emulator's counts (SPATIALSYNTH_CUDA_EMU_STATS), the bytes copied from and into pinned
# memory and the event synchronisations; and whether the scene graphs are the unlimited run's, byte for byte. Counts,
# not times; which buffers a run pins varies a little from run to run (two threads).
# Needs what scripts/emulator-counts.sh needs.
# usage: scripts/pinned-counts.sh [OUT]   (default out/pinned-counts)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/pinned-counts}
source scripts/emulator-env.sh
emulator_env "$out"
emulator_frames "$out"
run() { # run NAME [VAR=VALUE...] [-- SCENE OPTIONS...]: one run into OUT/NAME, with those variables and options
  local name=$1 vars=() opts=()
  shift
  while (($#)) && [ "$1" != -- ]; do vars+=("$1"); shift; done
  (($#)) && { shift; opts=("$@"); }
  rm -rf "$out/$name"
  env "${vars[@]}" SPATIALSYNTH_CUDA_EMU_STATS="$out/$name.json" target/release/spatialsynth --threads 2 scene \
    "$out/frames.json" -o "$out/$name" --backend cuda --quiet "${opts[@]}" > /dev/null
  python3 - "$out" "$name" <<'PY'
import filecmp, json, sys
out, name = sys.argv[1:]
p = json.load(open(f"{out}/{name}/run.json"))["pinned_memory"]
s = json.load(open(f"{out}/{name}.json"))
same = filecmp.cmp(f"{out}/none/scene_graphs.jsonl", f"{out}/{name}/scene_graphs.jsonl", shallow=False)
print(f"{name:>10}: {p['allocations']} buffers, peak {p['peak_bytes'] / 1e6:.1f} MB; refused {p['refused_by_limit']} "
      f"by the limit, {p['refused_by_driver']} by the driver; pageable {p['pageable_uploads']} uploads, "
      f"{p['pageable_read_backs']} read-backs; pinned copies {s['htod_pinned_bytes'] / 1e6:.1f} of "
      f"{s['htod_bytes'] / 1e6:.1f} MB up, {s['dtoh_pinned_bytes'] / 1e6:.1f} of {s['dtoh_bytes'] / 1e6:.1f} MB "
      f"down; {s['event_syncs']} event syncs; scene graphs {'the same' if same else 'DIFFER'}")
PY
}
run none
for mib in 64 32 16 0; do run "limit-$mib" -- --pinned-limit-mib "$mib"; done
run driver-24MiB SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT=25165824
