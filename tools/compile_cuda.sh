#!/usr/bin/env bash
# Compile-only check of the CUDA kernels: every csrc/cuda/*.cu (or the files
# given as arguments) through nvcc for sm_80 and sm_90, against the installed
# torch's headers, with setup.py's flags. Nothing is linked, so a CPU torch
# and no GPU suffice: a quick check while editing. CI builds and links the real
# CUDA extension instead (tools/build_cuda_ext.sh).
# Files go one at a time: each takes ~1.4 GB and a core for ~30 s.
#
# Environment: PYTHON (the interpreter with torch), NVCC, CUDA_ARCHS ("80 90").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if (($# > 0)); then
  files=("$@")
else
  shopt -s nullglob
  files=(csrc/cuda/*.cu)
  shopt -u nullglob
fi
if ((${#files[@]} == 0)); then
  echo "compile_cuda: no csrc/cuda/*.cu files yet, nothing to check"
  exit 0
fi

nvcc=${NVCC:-}
if [[ -z $nvcc ]]; then
  for candidate in "$(command -v nvcc || true)" "${CUDA_HOME:-/nonexistent}/bin/nvcc" \
    /usr/local/cuda/bin/nvcc; do
    if [[ -n $candidate && -x $candidate ]]; then
      nvcc=$candidate
      break
    fi
  done
fi
if [[ -z $nvcc ]]; then
  echo "compile_cuda: nvcc not found (set NVCC or CUDA_HOME)" >&2
  exit 1
fi

# torch's include paths for a CPU build (CUDA_HOME is None there, so we
# cannot ask for the CUDA ones), Python's headers, and torch's C++ ABI.
mapfile -t torch_flags < <("$PY" - <<'EOF'
import sysconfig

import torch
from torch.utils.cpp_extension import include_paths

for path in include_paths():
    print(f"-I{path}")
print(f"-I{sysconfig.get_paths()['include']}")
print(f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}")
EOF
)

gencode=()
for arch in ${CUDA_ARCHS:-80 90}; do
  gencode+=(-gencode "arch=compute_${arch},code=sm_${arch}")
done

# setup.py's nvcc flags (build_config.py), plus what compiling alone needs:
# -c, -fPIC, and NO_CMAKE_CONFIGURE_FILE since the CPU wheel lacks
# c10/cuda/impl/cuda_cmake_macros.h.
read -r -a config_flags < <("$PY" build_config.py nvcc)
flags=(-c -Xcompiler -fPIC -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE "${config_flags[@]}")

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "compile_cuda: $("$nvcc" --version | tail -n 1), archs ${CUDA_ARCHS:-80 90}"
for f in "${files[@]}"; do
  start=$SECONDS
  obj="$out/$(basename "$f").o"
  if ! "$nvcc" "${flags[@]}" "${gencode[@]}" "${torch_flags[@]}" "$f" -o "$obj"; then
    echo "compile_cuda: FAILED $f" >&2
    exit 1
  fi
  echo "compile_cuda: ok $f ($((SECONDS - start)) s, $(stat -c %s "$obj") bytes)"
done
echo "compile_cuda: ${#files[@]} file(s) compiled"
