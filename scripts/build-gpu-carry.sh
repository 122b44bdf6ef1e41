#!/usr/bin/env bash
# Builds, on a machine without a GPU, what a GPU host (CUDA driver and toolkit, no Rust, no network) needs to run the
# CUDA parity tests and the kernel benchmark, into gpu-carry/ (ignored by git; about 30 MB stripped):
#   gpu-carry/parity        tests/parity.rs (every backend against the CPU reference)
#   gpu-carry/cuda_kernels  tests/cuda_kernels.rs (NVRTC compile of every kernel)
#   gpu-carry/spatialsynth  the CLI (`bench --kernels --backend cuda`)
#   gpu-carry/run.sh        runs all three there, with SPATIALSYNTH_REQUIRE_CUDA=1 (a missing GPU fails)
# On the GPU host, from the repository root: gpu-carry/run.sh [OUT]  (OUT: where the logs go, default gpu-carry/out).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p gpu-carry
exe() { # the test executable of `cargo test --no-run` for test target $1
  cargo test --release --no-run --message-format=json --test "$1" 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]==sys.argv[1]: print(m["executable"])' "$1"
}
cargo build --release
for t in parity cuda_kernels; do
  strip -o "gpu-carry/$t" "$(exe "$t")"
done
strip -o gpu-carry/spatialsynth target/release/spatialsynth
cat > gpu-carry/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU host, from the repository root. Logs and the benchmark JSON go to ${1:-gpu-carry/out}.
set -uo pipefail
out=${1:-gpu-carry/out}
mkdir -p "$out"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export SPATIALSYNTH_REPO=$PWD SPATIALSYNTH_REQUIRE_CUDA=1 SPATIALSYNTH_REQUIRE_NVRTC=1
command -v ptxas >/dev/null || export PTXAS=/usr/local/cuda/bin/ptxas
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.csv" 2>&1
status=0
gpu-carry/cuda_kernels --test-threads 1 > "$out/cuda_kernels.log" 2>&1 || status=1
# The emulator run is for machines without a GPU: here the real device runs the same tests.
gpu-carry/parity --test-threads 1 --skip cuda_parity_on_the_emulator > "$out/parity.log" 2>&1 || status=1
gpu-carry/spatialsynth bench data/sample --kernels --backend cuda > "$out/kernel-bench.json" 2> "$out/kernel-bench.log" || status=1
tail -n 3 "$out"/*.log
exit $status
RUN
chmod +x gpu-carry/run.sh
ls -la gpu-carry
