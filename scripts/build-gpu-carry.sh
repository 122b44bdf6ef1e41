#!/usr/bin/env bash
# Builds, on a machine without a GPU, what a GPU host (CUDA driver and toolkit, no Rust, no network) needs to run the
# CUDA parity tests and the kernel benchmark, into gpu-carry/ (ignored by git; about 30 MB stripped):
#   gpu-carry/parity        tests/parity.rs (every backend against the CPU reference)
#   gpu-carry/cuda_kernels  tests/cuda_kernels.rs (NVRTC compile of every kernel)
#   gpu-carry/spatialsynth  the CLI (`bench --kernels --backend cuda`, `generate --backend cuda`)
#   gpu-carry/backends      the criterion benchmark benches/backends.rs (every kernel, CPU vs wgpu vs CUDA)
#   gpu-carry/run.sh        runs them there, with SPATIALSYNTH_REQUIRE_CUDA=1 (a missing GPU fails), each step within
#                           its own limit and all of them within one budget (GPU_CARRY_BUDGET_S, default 450 s), the
#                           most important first: a device lease is short.
# On the GPU host, from the repository root: gpu-carry/run.sh [OUT]  (OUT: where the logs go, default gpu-carry/out).
# If .gl/ holds the Vulkan/GL loader packages (/work/.library/device/README.md says how to fetch them; carry `.gl`
# too), the wgpu backend is also tested and benchmarked on the NVIDIA Vulkan driver.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p gpu-carry
exe() { # the executable of `cargo $1 --no-run` (test or bench, both optimised here) for target $2
  local release=()
  [ "$1" = test ] && release=(--release)
  cargo "$1" "${release[@]}" --no-run --message-format=json "--$1" "$2" 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]==sys.argv[1]:
        print(m["executable"])' "$2"
}
cargo build --release
for t in parity cuda_kernels; do
  strip -o "gpu-carry/$t" "$(exe test "$t")"
done
strip -o gpu-carry/backends "$(exe bench backends)"
strip -o gpu-carry/spatialsynth target/release/spatialsynth
cat > gpu-carry/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU host, from the repository root. Logs and the benchmark JSON go to ${1:-gpu-carry/out}; summary.txt says
# how each step ended and how long it took. At the end the logs are packed into logs.tgz (at most 8 files come back).
set -uo pipefail
out=${1:-gpu-carry/out}
mkdir -p "$out"
budget=${GPU_CARRY_BUDGET_S:-450} start=$SECONDS status=0
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export SPATIALSYNTH_REPO=$PWD SPATIALSYNTH_REQUIRE_CUDA=1 SPATIALSYNTH_REQUIRE_NVRTC=1
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
# ptxas for tests/cuda_kernels.rs: $PTXAS if set, else the one on the PATH (the toolkit's, above).
run_step() { # run_step required|optional NAME LIMIT COMMAND...: COMMAND's output to $out/NAME.log, within LIMIT and
  # what is left of the budget. A required step runs with what is left (at least 10 s) and fails the run unless it
  # passes; an optional one runs only with its whole LIMIT left and never fails the run.
  local kind=$1 name=$2 limit=$3 left t0=$SECONDS rc
  shift 3
  left=$((budget - (SECONDS - start)))
  if [ "$kind" = optional ] && ((left < limit)); then
    echo "$name: not run (optional; $left s of the budget left, it needs $limit s)" >> "$out/summary.txt"; return
  fi
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    echo "$name: SKIPPED (the budget of $budget s is spent)" >> "$out/summary.txt"; status=1; return
  fi
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  if [ "$kind" = optional ]; then
    echo "$name: rc=$rc after $((SECONDS - t0)) s (limit $limit s; optional)" >> "$out/summary.txt"
  else
    echo "$name: rc=$rc after $((SECONDS - t0)) s (limit $limit s)" >> "$out/summary.txt"
    ((rc == 0)) || status=1
  fi
}
step() { run_step required "$@"; }
optional() { run_step optional "$@"; }
{ date -u; uname -a; nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; } \
  > "$out/summary.txt" 2>&1
step cuda_kernels 90 gpu-carry/cuda_kernels --test-threads 1
# The tests of the CPU emulator of CUDA (kernels/emu), for machines without a GPU: not run here.
emulated=(--skip cuda_parity_on_the_emulator --skip the_emulator_runs_stream_work_as_late_as_a_gpu_may
  --skip a_scene_run_on_the_emulated_cuda_backend_keeps_its_streams_in_order)
# CUDA only first (no Vulkan loader needed); the emulator test is for machines without a GPU.
step parity-cuda 180 env SPATIALSYNTH_PARITY_ONLY=cuda gpu-carry/parity --test-threads 1 \
  "${emulated[@]}"
# Only when that failed: again with cudarc's event tracking (the backend orders its streams itself without it), so
# that a failure of the host's ordering shows as this step passing where the one above did not.
if ! grep -q '^parity-cuda: rc=0 ' "$out/summary.txt"; then
  step parity-cuda-tracked 150 env SPATIALSYNTH_PARITY_ONLY=cuda SPATIALSYNTH_CUDA_EVENT_TRACKING=1 \
    gpu-carry/parity --test-threads 1 "${emulated[@]}"
fi
step kernel-bench 150 sh -c \
  'gpu-carry/spatialsynth bench data/sample --kernels --backend cuda > "$0/kernel-bench.json"' "$out"
# The README's main job on the GPU and on the CPU reference: the same questions and answers word for word, every
# number within the parity tests' tolerance (scripts/compare-datasets.py; the emulated CUDA backend's largest relative
# difference on the sample is 5.8e-6, lavapipe's 1.3e-4, on a clock margin of 0.68 degrees).
step generate 90 sh -c 'set -e; gpu-carry/spatialsynth generate data/sample -o /tmp/gen-cuda --backend cuda --quiet
  gpu-carry/spatialsynth generate data/sample -o /tmp/gen-cpu --backend cpu --quiet
  python3 scripts/compare-datasets.py /tmp/gen-cpu /tmp/gen-cuda'
# deploy/gpus.sh on the real nvidia-smi and driver: a shard per GPU listed, merged; the same dataset as one run.
step gpus 60 sh -c 'set -e
  [ -f /tmp/gen-cuda/scene_graphs.jsonl ] || { echo "no /tmp/gen-cuda: the generate step did not finish"; exit 3; }
  SPATIALSYNTH=gpu-carry/spatialsynth deploy/gpus.sh /tmp/gen-gpus data/sample
  python3 scripts/compare-datasets.py /tmp/gen-cuda /tmp/gen-gpus/dataset'
if ls .gl/*.deb > /dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  step parity-wgpu 120 env SPATIALSYNTH_PARITY_ONLY=wgpu SPATIALSYNTH_REQUIRE_WGPU=1 gpu-carry/parity --test-threads 1 \
    "${emulated[@]}"
fi
step criterion 180 env SPATIALSYNTH_BENCH_FRAMES=1,16 gpu-carry/backends --bench --noplot --warm-up-time 0.5 \
  --measurement-time 2
# k1_and_k2_batches: the table-driven K1 grouping and K2 kernels on a mixed batch (labels, odd frames, no hypotheses).
# cuda_prefix_sums: the tiled scan (scan_tile_sums, scan_tiles_apply) on up to 2^20 counts.
step memcheck 90 env SPATIALSYNTH_PARITY_ONLY=cuda compute-sanitizer --tool memcheck --error-exitcode 1 \
  gpu-carry/parity --test-threads 1 k3_ k1_batches k1_and_k2_batches gaps_of_large cuda_prefix_sums
# The gap kernels' per-block lists in shared memory (refine_bounds, search_pairs) and the tiled scan's block scans:
# no shared-memory hazards.
step racecheck 60 env SPATIALSYNTH_PARITY_ONLY=cuda compute-sanitizer --tool racecheck --error-exitcode 1 \
  gpu-carry/parity --test-threads 1 gaps_of_large cuda_prefix_sums
# K1's unprojection and grouping buffers, K2's samples and DBSCAN's per-point tables are allocated uninitialised (the
# kernels write every entry read): no read of unwritten memory.
step initcheck 60 env SPATIALSYNTH_PARITY_ONLY=cuda compute-sanitizer --tool initcheck --error-exitcode 1 \
  gpu-carry/parity --test-threads 1 k1_batches k1_and_k2_batches k3_border_ties
# How a host thread waits for the device: the benchmark again with spinning waits (the backend blocks by default,
# SPATIALSYNTH_CUDA_SYNC), for the end-to-end frames/s and process CPU a frame of each side by side. Last, and only
# when the budget still holds its whole limit (it does not fail the run).
optional kernel-bench-spin 100 sh -c \
  'SPATIALSYNTH_CUDA_SYNC=spin gpu-carry/spatialsynth bench data/sample --kernels --backend cuda \
    > "$0/kernel-bench-spin.json"' "$out"
# The end-to-end figure with three batches in flight instead of two (--in-flight; the other workloads shrunk to almost
# nothing): whether a third batch lets the device or the host do more. Optional, like the one above.
optional kernel-bench-inflight3 100 sh -c \
  'gpu-carry/spatialsynth bench data/sample --kernels --backend cuda --in-flight 3 --repeats 3 --k1-frames 1 \
    --k2-points 4096 --k2-hypotheses 64 --k5-frames 1 > "$0/kernel-bench-inflight3.json"' "$out"
# Nsight Compute on the targets' kernels (K1's count_valid, write_points and scans on the 256-frame batch, K2's score
# on 1024 hypotheses x 1M points, K5's relate), where the host lets it read the counters: each kernel's duration and
# its DRAM and L2 throughput as shares of the hardware's, so that a missed target says why without another GPU run.
# One launch of each launch configuration (kernel, grid, block) is profiled. Its table (and the benchmark's JSON) goes
# to ncu.log (in logs.tgz). Optional and last, like the two above.
optional ncu 90 sh -c 'ncu --clock-control none --csv --page details --section SpeedOfLight \
  -k "regex:^(count_valid|write_points|scan_counts|scan_tile_sums|scan_tiles_apply|score|relate)$" \
  --filter-mode per-launch-config -c 1 \
  gpu-carry/spatialsynth bench data/sample --kernels --backend cuda --repeats 1 --k5-frames 64 --e2e-frames 1'
# The end-to-end figure with no page-locked memory for the backend (--pinned-limit-mib 0: every staged upload and
# read-back through pageable memory, as on a host that cannot pin): what the pinned buffers gain, against the
# end-to-end figure of kernel-bench.json (the same workload, shrunk elsewhere as above). Optional and last.
optional kernel-bench-unpinned 100 sh -c \
  'gpu-carry/spatialsynth bench data/sample --kernels --backend cuda --pinned-limit-mib 0 --repeats 3 --k1-frames 1 \
    --k2-points 4096 --k2-hypotheses 64 --k5-frames 1 > "$0/kernel-bench-unpinned.json"' "$out"
echo "total: $((SECONDS - start)) s of $budget" >> "$out/summary.txt"
(cd "$out" && tar czf logs.tgz --remove-files ./*.log)
cat "$out/summary.txt"
exit $status
RUN
chmod +x gpu-carry/run.sh
ls -la gpu-carry
