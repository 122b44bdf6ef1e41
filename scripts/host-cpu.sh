#!/usr/bin/env bash
# The host's CPU time a frame on the CUDA path, measured on the CPU emulator (kernels/emu) without the emulator's own
# work: `spatialsynth --threads 2 scene --backend cuda` on 20 and on 80 frames of 10 objects
# (scripts/grid-box-manifest.py: the sample frames without instance masks, topped up with grid boxes), each run's
# process CPU time (user + sys, /usr/bin/time) less the emulator's (`emulator_cpu_s` of its statistics: every driver
# call's time on its calling thread and the time of the threads that run the kernels' blocks). The difference between
# the two runs, over the 60 frames between them, is the host's CPU a frame: loading and decoding, K1-K5's host steps,
# packing, the driver calls' arguments, writing, without the start-up (NVRTC compiling the kernels) both runs share.
# It is an upper bound for the GPU host's host side in one way (the emulator's threads compete for the caches) and a
# lower bound in another (a real driver call costs the host more than the emulator's bookkeeping, which is not
# counted: see the driver calls a frame in BENCHMARKS.md). The host's share is about 1% of the process's CPU time
# here, so a small error in the emulator's metering (the few calls it does not meter, thread exits) moves the result
# as much as the host's own work does: compare builds over several rounds each, alternated. Rayon's idle spinning
# counts as the host's. Needs what scripts/emulator-env.sh needs.
# usage: scripts/host-cpu.sh [OUT] [ROUNDS]   (default out/host-cpu, 3 rounds of the two runs, alternated)
set -euo pipefail
shopt -s inherit_errexit  # a failed run inside $(...) stops the script
cd "$(dirname "$0")/.."
out=${1:-out/host-cpu}
rounds=${2:-3}
source scripts/emulator-env.sh
emulator_env "$out"
python3 scripts/grid-box-manifest.py data/sample/frames.json 10 4 > "$out/frames20.json"
python3 scripts/grid-box-manifest.py data/sample/frames.json 10 16 > "$out/frames80.json"
frames() { python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['frames']))" "$1"; }
run() { # run N: prints "frames process_cpu_s emulator_cpu_s host_cpu_s"
  local manifest="$out/frames$1.json" n
  n=$(frames "$manifest")
  rm -rf "$out/scene$1"
  SPATIALSYNTH_CUDA_EMU_STATS="$out/stats$1.json" /usr/bin/time -f "%U %S" -o "$out/time$1.txt" \
    target/release/spatialsynth --threads 2 scene "$manifest" -o "$out/scene$1" --backend cuda > /dev/null \
    || { echo "the run of $1 frames failed" >&2; return 1; }
  python3 - "$n" "$out/time$1.txt" "$out/stats$1.json" <<'PY'
import json, sys
n = int(sys.argv[1])
user, system = map(float, open(sys.argv[2]).read().split()[-2:])
emu = json.load(open(sys.argv[3]))["emulator_cpu_s"]
print(n, f"{user + system:.3f}", f"{emu:.3f}", f"{user + system - emu:.3f}")
PY
}
echo "round frames process_cpu_s emulator_cpu_s host_cpu_s"
for r in $(seq 1 "$rounds"); do
  small=$(run 20)
  large=$(run 80)
  echo "$r $small"
  echo "$r $large"
  python3 - "$small" "$large" <<'PY'
import sys
a, b = (s.split() for s in sys.argv[1:3])
frames = int(b[0]) - int(a[0])
print(f"  host CPU a frame: {(float(b[3]) - float(a[3])) / frames * 1e3:.2f} ms "
      f"(emulator: {(float(b[2]) - float(a[2])) / frames * 1e3:.1f} ms a frame)")
PY
done
