#!/usr/bin/env bash
# Installs the Python packages spatialsynth needs at run time and in its tests, pinned:
#   onnxruntime  its libonnxruntime.so is what the model runner loads (nothing is downloaded at build time);
#   numpy, pillow  the independent YOLOX reference in tests/python/yolox_reference.py;
#   pyarrow  the dataset check in tests/python/check_dataset.py (reads qa.parquet).
# Quick when they are already there. Works with a system Python that refuses plain `pip install` (PEP 668).
set -euo pipefail
PKGS=(onnxruntime==1.32.0 "numpy>=1.26" "pillow>=10" "pyarrow>=15")
if python3 - <<'PY' 2>/dev/null
import onnxruntime, numpy, PIL, pyarrow
assert onnxruntime.__version__ == "1.32.0"
PY
then
  echo "python packages: onnxruntime $(python3 -c 'import onnxruntime; print(onnxruntime.__version__)'), numpy, pillow, pyarrow present"
  exit 0
fi
python3 -m pip install --quiet "${PKGS[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --user "${PKGS[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --user --break-system-packages "${PKGS[@]}"
python3 -c 'import onnxruntime; print("python packages: installed onnxruntime", onnxruntime.__version__)'
