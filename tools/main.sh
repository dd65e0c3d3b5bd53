#!/usr/bin/env bash
# The main job of README.md: set up, then run the sampling benchmark
# (N = M from 1e5 to 1e8; a few minutes on 2 cores). Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec "${PYTHON:-python3}" benchmarks/bench_sample_with_replacement.py "$@"
