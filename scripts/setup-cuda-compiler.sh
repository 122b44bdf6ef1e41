#!/usr/bin/env bash
# Installs CUDA 13's NVRTC (libnvrtc.so.13) and ptxas from NVIDIA's pip wheels, pinned to 13.0.x (the CUDA version
# of the GPU hosts; a newer NVRTC emits PTX their driver may refuse). No GPU is needed: they compile the kernels of
# kernels/ (tests/cuda_kernels.rs). To run them, put the printed lib folder on LD_LIBRARY_PATH and set PTXAS.
# Works with a system Python that refuses plain `pip install` (PEP 668). Quick when they are already there.
set -euo pipefail
PKGS=(nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-nvcc==13.0.88)
cu13() { python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))" 2>/dev/null; }
if dir=$(cu13) && [ -f "$dir/lib/libnvrtc.so.13" ] && [ -x "$dir/bin/ptxas" ]; then
  echo "cuda compiler: NVRTC and ptxas present in $dir"
  exit 0
fi
python3 -m pip install --quiet "${PKGS[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --user "${PKGS[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --user --break-system-packages "${PKGS[@]}"
dir=$(cu13)
echo "cuda compiler: installed NVRTC and ptxas in $dir (LD_LIBRARY_PATH=$dir/lib PTXAS=$dir/bin/ptxas)"
