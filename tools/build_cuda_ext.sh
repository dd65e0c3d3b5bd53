#!/usr/bin/env bash
# The install a GPU user types, checked on a machine with or without a GPU:
# a venv with a CUDA build of torch, `pip install --no-build-isolation .`
# (not editable; no TORCH_CUDA_ARCH_LIST or CUDA_HOME given, so setup.py picks
# them, as on a docker build or a login node), then, from outside the source
# tree, a CUDA kernel for every pada:: op and the test suite against the
# installed package. CI runs this; without a GPU the CUDA tests are skipped.
#
# Environment: CUDA_VENV (default build/venv-cuda), CUDA_TORCH (2.14.1),
# CUDA_TORCHVISION (0.29.1), MAX_JOBS (2), CUDA_VENV_MIN_FREE_GB (10).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${CUDA_VENV:-$root/build/venv-cuda}
py=$venv/bin/python

# A CUDA torch with its CUDA libraries takes about 5.5 GB in the venv, and pip
# holds the downloaded wheels (about 3 GB) beside it until the install ends: a
# full disk would fail mid-install with pip's bare ENOSPC.
# Checked only while the venv lacks that torch (a reinstall needs no room).
want=${CUDA_TORCH:-2.14.1}
if ! [[ -x $py ]] || ! "$py" -c "import importlib.metadata as m, sys
sys.exit(m.version('torch').split('+')[0] != '$want')" 2>/dev/null; then
  need_gb=${CUDA_VENV_MIN_FREE_GB:-10}
  parent=$(dirname "$venv")
  mkdir -p "$parent"
  free_gb=$(df -Pk "$parent" | awk 'NR == 2 { print int($4 / 1048576) }')
  if ((free_gb < need_gb)); then
    echo "build_cuda_ext: $parent has $free_gb GB free; a CUDA torch venv" \
      "needs $need_gb GB (CUDA_VENV_MIN_FREE_GB). Free some space or set CUDA_VENV." >&2
    exit 1
  fi
fi
if [[ ! -x $py ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
# No pip cache: where the wheels come from the network it would hold a second copy.
"$py" -m pip install -q --no-cache-dir "torch==$want" "torchvision==${CUDA_TORCHVISION:-0.29.1}" \
  numpy scipy pytest ninja "setuptools>=64" wheel scikit-learn tqdm matplotlib
"$py" -c 'import torch; assert torch.version.cuda, f"{torch.__version__} is not a CUDA build"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs visible: {torch.cuda.device_count()}")'
echo "build_cuda_ext: CUDA toolkit $("$py" build_config.py cuda-home), archs $("$py" build_config.py archs)"

start=$SECONDS
env -u CUDA_HOME -u CUDA_PATH -u TORCH_CUDA_ARCH_LIST MAX_JOBS="${MAX_JOBS:-2}" \
  "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall .
echo "build_cuda_ext: built and installed in $((SECONDS - start)) s"

# From a folder of its own: the source folder would shadow the installed package.
outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
cd "$outside"
"$py" "$root/tools/check_kernels.py" --cuda
"$py" -m pytest -q -p no:cacheprovider -c "$root/pyproject.toml" --rootdir "$root" "$root/tests" "$@"
