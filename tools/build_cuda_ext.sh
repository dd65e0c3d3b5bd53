#!/usr/bin/env bash
# The install a GPU user types, checked on a machine with or without a GPU:
# a venv with a CUDA build of torch, `pip install --no-build-isolation .`
# (not editable; no TORCH_CUDA_ARCH_LIST or CUDA_HOME given, so setup.py picks
# them, as on a docker build or a login node), then, from outside the source
# tree, a CUDA kernel for every pada:: op and the test suite against the
# installed package. CI runs this; without a GPU the CUDA tests are skipped.
#
# Environment: CUDA_VENV (default build/venv-cuda), CUDA_TORCH (2.14.1),
# CUDA_TORCHVISION (0.29.1), MAX_JOBS (2). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${CUDA_VENV:-$root/build/venv-cuda}
py=$venv/bin/python

if [[ ! -x $py ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$py" -m pip install -q "torch==${CUDA_TORCH:-2.14.1}" "torchvision==${CUDA_TORCHVISION:-0.29.1}" \
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
