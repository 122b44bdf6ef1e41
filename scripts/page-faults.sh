#!/usr/bin/env bash
# Page faults a frame of a scene run: `perf stat -e page-faults` of `spatialsynth --threads 2 scene` on 20 and on 80
# ten-object frames (scripts/grid-box-manifest.py: the sample frames without instance masks, topped up with grid
# boxes), the difference divided by the 60 frames between (so start-up and warm-up cancel out). Needs perf.
# usage: scripts/page-faults.sh [BACKEND [ROUNDS]]   (default: cpu, 3 rounds; one line per round)
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-cpu} rounds=${2:-3}
command -v perf > /dev/null || { echo "perf is not installed" >&2; exit 1; }
cargo build --release --locked
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 20 80; do
  python3 scripts/grid-box-manifest.py data/sample/frames.json 10 $((n / 5)) > "$tmp/frames$n.json"
done
faults() { # faults N: the page faults of one run on N frames
  rm -rf "$tmp/out"
  perf stat -e page-faults -x, -o "$tmp/stat" target/release/spatialsynth --threads 2 scene "$tmp/frames$1.json" \
    -o "$tmp/out" --backend "$backend" > /dev/null 2>&1
  grep page-faults "$tmp/stat" | cut -d, -f1
}
for r in $(seq "$rounds"); do
  a=$(faults 20) b=$(faults 80)
  echo "round $r: $a faults on 20 frames, $b on 80: $(((b - a) / 60)) a frame"
done
