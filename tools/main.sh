#!/usr/bin/env bash
# The main job of README.md: set up, then run the short version of the
# end-to-end experiment on the embedded digits (SPOS vs DA vs PA vs PA&DA,
# 2 seeds x 15 epochs; about 2 minutes on 2 cores). It prints the comparison
# table and writes python/runs/latest/{results.json,table.md,kt.png,gv.png,entropy.png}.
# Extra arguments go to `python -m pada_nas` (e.g. --device cpu on a GPU machine,
# --amp bf16); it trains on cuda when torch sees a GPU, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
PYTHONPATH=python exec "${PYTHON:-python3}" -m pada_nas --quick "$@"
