#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's counts of the CUDA backend on the CPU emulator (kernels/emu): 20 frames of 10 objects
# (scripts/grid-box-manifest.py: the sample frames without instance masks, 4 times, topped up with grid boxes)
# through `spatialsynth scene --backend cuda`, one batch per 8 frames (2 threads).
#   OUT/stats.json   launches, copies, bytes, synchronisations (SPATIALSYNTH_CUDA_EMU_STATS)
#   OUT/transfers.txt  the copies' bytes a frame by kernel (SPATIALSYNTH_CUDA_EMU_TRACE, scripts/emulator-transfers.py)
#   OUT/samples.txt  where perf is installed: CPU samples (499 Hz) per emulated kernel: the work the kernels ask for,
#                    not a GPU time
# Needs the emulator's sources, written by `cargo test --release --test parity cuda_parity_on_the_emulator`
# (target/tmp/cuda-emu-*; the one a test used last is used), g++ and CUDA 13's NVRTC (scripts/setup-cuda-compiler.sh).
# The emulator is rebuilt here with -O2 and without AddressSanitizer, so that the samples are the kernels' own.
# usage: scripts/emulator-counts.sh [OUT]   (default out/emulator-counts)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/emulator-counts}
source scripts/emulator-env.sh
emulator_env "$out"
emulator_frames "$out"
rm -rf "$out/scene"
SPATIALSYNTH_CUDA_EMU_STATS="$out/stats.json" SPATIALSYNTH_CUDA_EMU_TRACE="$out/trace.txt" target/release/spatialsynth --threads 2 scene "$out/frames.json" \
  -o "$out/scene" --backend cuda
cat "$out/stats.json"; echo
python3 scripts/emulator-transfers.py "$out/trace.txt" 20 | tee "$out/transfers.txt"
if command -v perf >/dev/null; then
  rm -rf "$out/scene-perf"
  perf record -q -e cpu-clock -F 499 -o "$out/perf.data" target/release/spatialsynth --threads 2 scene \
    "$out/frames.json" -o "$out/scene-perf" --backend cuda >/dev/null
  perf report -i "$out/perf.data" --sort sym --stdio --no-children -n 2>/dev/null \
    | grep -E 'emu_module_[0-9]+::[a-z_]+$|^# Samples' > "$out/samples.txt" || true
  cat "$out/samples.txt"
fi
