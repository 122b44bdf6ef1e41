# Sourced (not run) by the scripts that run the CLI on the CPU emulator of CUDA (kernels/emu): `emulator_env OUT`
# builds the emulator into OUT/emu/libcuda.so (-O2 -g, without AddressSanitizer, so that perf's samples and the
# emulator's CPU time are the kernels' own) from the module sources a test wrote last (target/tmp/cuda-emu-*, written
# by `cargo test --release --test parity cuda_parity_on_the_emulator`), builds the CLI, and puts the emulator and
# CUDA 13's NVRTC (scripts/setup-cuda-compiler.sh) first on LD_LIBRARY_PATH. Needs g++.
emulator_env() {
  local out=$1 src cu13
  mkdir -p "$out/emu"
  src=$(ls -dt target/tmp/cuda-emu-* 2>/dev/null | head -n 1 || true)
  if [ -z "$src" ]; then
    echo "no emulator sources: run cargo test --release --test parity cuda_parity_on_the_emulator" >&2
    return 1
  fi
  g++ -std=c++17 -fPIC -shared -pthread -ffp-contract=off -fno-fast-math -w -O2 -g -I kernels/emu \
    -o "$out/emu/libcuda.so" kernels/emu/driver.cpp "$src"/module_*.cpp
  cargo build --release --locked
  cu13=$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))")
  export LD_LIBRARY_PATH="$out/emu:$cu13/lib"
}

# `emulator_frames OUT`: the 20 frames of 10 objects the counting scripts run (the sample frames without instance masks,
# 4 times, topped up with grid boxes: scripts/grid-box-manifest.py), as OUT/frames.json.
emulator_frames() {
  python3 scripts/grid-box-manifest.py data/sample/frames.json 10 4 > "$1/frames.json"
}
