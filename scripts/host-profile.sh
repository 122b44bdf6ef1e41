#!/usr/bin/env bash
# Where the host's CPU goes on a run through the CUDA backend, with the CPU emulator (kernels/emu) as the device:
# `perf record --call-graph dwarf` (999 Hz) of `spatialsynth --threads 2 scene --backend cuda` on 80 frames of 10
# objects (scripts/grid-box-manifest.py: the sample frames without instance masks, 16 times, topped up with grid
# boxes), the samples sorted by scripts/host-profile.py (the emulator's left out). Samples, not times: the emulator
# shares the two cores. Needs perf and the emulator that scripts/emulator-counts.sh OUT builds (OUT/emu/libcuda.so).
# usage: scripts/host-profile.sh [OUT [--containing=A,B]]   (default out/emulator-counts, the same OUT as
# emulator-counts.sh; --containing: see scripts/host-profile.py)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/emulator-counts}
if [ ! -f "$out/emu/libcuda.so" ]; then
  echo "no $out/emu/libcuda.so: run scripts/emulator-counts.sh $out first" >&2
  exit 1
fi
command -v perf > /dev/null || { echo "perf is not installed" >&2; exit 1; }
python3 scripts/grid-box-manifest.py data/sample/frames.json 10 16 > "$out/frames80.json"
cargo build --release --locked
CU13=$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))")
export LD_LIBRARY_PATH="$out/emu:$CU13/lib"
rm -rf "$out/scene80"
perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -o "$out/host.data" target/release/spatialsynth \
  --threads 2 scene "$out/frames80.json" -o "$out/scene80" --backend cuda > /dev/null
perf script -i "$out/host.data" -F comm,tid,ip,sym,dso 2> /dev/null | python3 scripts/host-profile.py 80 "${@:2}" \
  | tee "$out/host-profile.txt"
