#!/usr/bin/env bash
# Rehearses the GPU carry here, without a GPU (BENCHMARKS.md's rehearsal figures): builds gpu-carry/
# (scripts/build-gpu-carry.sh) and runs gpu-carry/run.sh with the CPU emulator of CUDA (kernels/emu, built by
# scripts/emulator-env.sh) as libcuda and a stand-in nvidia-smi that lists one GPU. What must pass does
# (cuda_kernels, parity-cuda, generate, gpus); the benchmark steps refuse the emulator (rc 2), criterion runs out of
# time on it and compute-sanitizer is absent (rc 127). OUT/summary.txt says how each step ended and how long it took
# against the budget. Needs what scripts/emulator-counts.sh needs.
# usage: scripts/rehearse-gpu-carry.sh [OUT]   (default out/rehearsal)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/rehearsal}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source scripts/emulator-env.sh
emulator_env "$out"
# tests/cuda_kernels.rs' ptxas: CUDA 13's from the pip wheel, unless PTXAS says otherwise.
export PTXAS=${PTXAS:-$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))")}
scripts/build-gpu-carry.sh
mkdir -p "$out/bin"
cat > "$out/bin/nvidia-smi" <<'SMI'
#!/usr/bin/env bash
# A stand-in for the rehearsal on the CUDA emulator: one GPU.
case "$*" in
  -L) echo "GPU 0: Emulated GPU (UUID: GPU-00000000-0000-0000-0000-000000000000)";;
  *query*) echo "name, driver_version, memory.total [MiB], clocks.max.sm [MHz]"; echo "emulator, 0, 0 MiB, 0 MHz";;
  *) echo "stand-in nvidia-smi (rehearsal)";;
esac
SMI
chmod +x "$out/bin/nvidia-smi"
rm -rf "$out/carry"
PATH="$out/bin:$PATH" gpu-carry/run.sh "$out/carry" || true
