#!/usr/bin/env bash
# The machine code (SASS) that ptxas makes of the CUDA kernels, without a GPU: the compute_90 PTX of every module of
# kernels/ as tests/cuda_kernels.rs compiles it (NVRTC, the backend's options), assembled for sm_90 by the CI's ptxas,
# disassembled by cuobjdump and nvdisasm (pip wheels, installed under OUT/tools: they only disassemble; the cubin is
# ptxas 13.0's). For each kernel named (all of a module's if none): OUT/<kernel>.sass, and one line counting its
# instructions, global loads and stores, shared loads and stores, barriers and branches, then a line for each loop
# (its size, global loads and barriers). What it is for: checking
# that a kernel keeps its loads in flight (its loads issued together, not one between two barriers or branches),
# that its stores are few and wide, what a change did to registers (tests/cuda_kernels.rs prints those).
# Needs scripts/setup-cuda-compiler.sh's wheels (NVRTC, ptxas) and network for the two wheels.
# usage: scripts/kernel-sass.sh OUT MODULE [KERNEL...]     e.g. scripts/kernel-sass.sh out/sass unproject.cu write_points
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/kernel-sass.sh OUT MODULE [KERNEL...]}
module=${2:?usage: scripts/kernel-sass.sh OUT MODULE [KERNEL...]}
shift 2
mkdir -p "$out"
out=$(cd "$out" && pwd)
CU13=$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))")
export LD_LIBRARY_PATH="$CU13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ptxas=${PTXAS:-$CU13/bin/ptxas}
tools="$out/tools/nvidia/cu13/bin"
if [ ! -x "$tools/cuobjdump" ] || [ ! -x "$tools/nvdisasm" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$out/tools" nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51
fi
if ! SPATIALSYNTH_PTX_DIR="$out/ptx" PTXAS="$ptxas" cargo test --release --locked --test cuda_kernels -- ptxas \
  > "$out/ptxas.log" 2>&1; then
  cat "$out/ptxas.log" >&2
  exit 1
fi
ptx="$out/ptx/$module-compute_90.ptx"
[ -f "$ptx" ] || { echo "no PTX for $module (the modules: $(ls "$out/ptx" | sed 's/-compute_.*//' | sort -u | tr '\n' ' '))" >&2; exit 1; }
"$ptxas" -O3 -arch=sm_90 -o "$out/$module.cubin" "$ptx"
if [ $# = 0 ]; then
  set -- $(grep -oE '^\.visible \.entry [A-Za-z_0-9]+' "$ptx" | awk '{print $3}')
fi
export PATH="$tools:$PATH"
for kernel in "$@"; do
  "$tools/cuobjdump" -sass -fun "$kernel" "$out/$module.cubin" | grep -E '^\s+/\*[0-9a-f]{4,}\*/' \
    | sed -E 's@/\* 0x[0-9a-f]+ \*/@@' | awk '{$1=$1};1' > "$out/$kernel.sass"
  count() { grep -cE "$1" "$out/$kernel.sass" || true; }
  printf '%-18s %5s instructions  LDG %3s  STG %3s  LDS %3s  STS %3s  BAR %2s  BRA %3s  -> %s\n' "$kernel" \
    "$(wc -l < "$out/$kernel.sass")" "$(count ' LDG')" "$(count ' STG')" "$(count ' LDS')" "$(count ' STS')" \
    "$(count ' BAR')" "$(count ' BRA')" "$out/$kernel.sass"
  # Each loop (a branch back to a lower address): its first and last instruction and how many it holds, with its
  # global loads and barriers: the instructions a point of a kernel's inner loop, and what waits inside it.
  python3 - "$out/$kernel.sass" <<'PY'
import re, sys
rows = [(int(m.group(1), 16), l) for l in open(sys.argv[1]) if (m := re.match(r"/\*([0-9a-f]+)\*/", l))]
for addr, l in rows:
    b = re.search(r"BRA 0x([0-9a-f]+)", l)
    if b and int(b.group(1), 16) < addr:
        body = [r for a, r in rows if int(b.group(1), 16) <= a <= addr]
        print(f"  loop 0x{int(b.group(1), 16):04x}-0x{addr:04x}: {len(body):4d} instructions, "
              f"LDG {sum(' LDG' in r for r in body):2d}, BAR {sum(' BAR' in r for r in body)}")
PY
done
