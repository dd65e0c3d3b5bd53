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
"$PY" -m pip install -q triton || echo "setup: triton unavailable; Triton tests will be skipped"
"$PY" -m pip install -q --no-build-isolation -e .
