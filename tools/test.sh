#!/usr/bin/env bash
# The test command of README.md: set up, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec "${PYTHON:-python3}" -m pytest -q tests "$@"
