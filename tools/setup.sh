#!/usr/bin/env bash
# Installs what pada_ext needs on a fresh machine, then builds it in place
# (editable), so that the tests and benchmarks run from this checkout.
# Idempotent: what is already installed is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" 2>/dev/null; then
  # A CPU wheel; on a GPU machine install the CUDA torch of your choice first.
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q numpy scipy pytest ninja "setuptools>=64" wheel
# The end-to-end experiment (python/): embedded data, progress bars, plots.
"$PY" -m pip install -q scikit-learn tqdm matplotlib
"$PY" -m pip install -q triton || echo "setup: triton unavailable; Triton tests will be skipped"
# Lint tools, pinned: another version may format differently and fail CI.
"$PY" -m pip install -q "clang-format==23.1.5" "ruff==0.17.6"
# CMake builds the C++ tests (CMakeLists.txt needs >= 3.18); pip's if the system one is older.
cmake_version=$(cmake --version 2>/dev/null | sed -n '1s/[^0-9]*\([0-9][0-9.]*\).*/\1/p' || true)
if [[ -z $cmake_version || $(printf '%s\n' 3.18 "$cmake_version" | sort -V | head -n 1) != 3.18 ]]; then
  "$PY" -m pip install -q "cmake>=3.18"
fi
"$PY" -m pip install -q --no-build-isolation -e .
