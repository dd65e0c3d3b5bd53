"""The one source of pada_ext's compile flags and CUDA toolchain choices.

Read by setup.py (the extension a user installs), CMakeLists.txt (the C++
library and tests: `cmake_cxx_flags()`, `CXX_STD`) and
tools/compile_cuda.sh (`python build_config.py nvcc`), so that every build
and check compiles the kernels the same way.

Flag policy:
- C++ is compiled without FMA contraction (-ffp-contract=off): the samplers'
  alias tables must round the same on host and device. The one exception is
  csrc/cpu/cross_entropy_with_grad_norm.cpp, whose exp/log are contracted
  on purpose by a pragma in that file (its results are compared with a
  tolerance, not bit for bit).
- nvcc gets no --use_fast_math; device code that must match the host uses
  the explicit-rounding intrinsics of csrc/common/macros.h.
- half/bfloat16 operator overloads are disabled (torch's convention), so
  conversions in kernels are explicit.

Run as a script: `python build_config.py cxx|nvcc|cmake-cxx|cxx-std|cuda-home|archs`.
"""

import os
import re
import shutil
import subprocess
import sys

CXX_STD = "c++20"  # torch >= 2.10 headers need it; older ones accept it

CXX_FLAGS = ["-O3", f"-std={CXX_STD}", "-ffp-contract=off"] + (
    ["-fopenmp"] if sys.platform != "darwin" else []
)
LINK_FLAGS = ["-fopenmp"] if sys.platform != "darwin" else []
NVCC_FLAGS = [
    "-O3",
    f"-std={CXX_STD}",
    "--expt-relaxed-constexpr",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]
DEFINES_CUDA = ["WITH_CUDA"]

# Used when neither TORCH_CUDA_ARCH_LIST nor a visible GPU says otherwise and
# torch cannot list the archs it was built for: Turing to Hopper.
FALLBACK_ARCHS = ["7.5", "8.0", "8.6", "8.9", "9.0"]


def cmake_cxx_flags():
    """CXX_FLAGS less what CMake sets itself (-O3 by build type, the standard, OpenMP)."""
    return [f for f in CXX_FLAGS if f not in ("-O3", "-fopenmp", f"-std={CXX_STD}")]


def _has_cudart(home: str) -> bool:
    for lib in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
        d = os.path.join(home, lib)
        if os.path.isdir(d) and any(f.startswith("libcudart.so") for f in os.listdir(d)):
            return True
    return False


def _nvcc_top(nvcc: str):
    """The toolkit root nvcc itself reports: a wrapper script's real install."""
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.realpath(m.group(1).strip()) if m else None


def find_cuda_home() -> str:
    """The CUDA toolkit to build with: one that has bin/nvcc and libcudart.

    CUDA_HOME (or CUDA_PATH) when set, which must then be a real toolkit;
    otherwise the toolkit that `nvcc` on PATH belongs to (asking nvcc, since
    torch's guess from nvcc's path is wrong for wrapper scripts), then
    /usr/local/cuda. Raises RuntimeError naming CUDA_HOME if none is usable,
    before anything is compiled.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            if not os.path.exists(os.path.join(home, "bin", "nvcc")) or not _has_cudart(home):
                raise RuntimeError(
                    f"{var}={home} is not a CUDA toolkit (it needs bin/nvcc and "
                    "lib64/libcudart.so); set CUDA_HOME to the toolkit's root"
                )
            return home
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        top = _nvcc_top(nvcc)
        if top:
            candidates.append(top)
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.exists(os.path.join(home, "bin", "nvcc")) and _has_cudart(home):
            return home
    raise RuntimeError(
        "no CUDA toolkit found (looked at " + ", ".join(candidates) + "): set CUDA_HOME to "
        "the toolkit's root (the folder with bin/nvcc and lib64/libcudart.so), or build "
        "without CUDA with FORCE_ONLY_CPU=1"
    )


def nvcc_archs(cuda_home: str):
    """The compute capabilities this nvcc can compile for, as "8.0" strings."""
    out = subprocess.run(
        [os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-arch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    archs = []
    for m in re.finditer(r"compute_(\d+)", out):
        n = int(m.group(1))
        archs.append(f"{n // 10}.{n % 10}")
    return archs


def default_arch_list(torch, cuda_home: str):
    """TORCH_CUDA_ARCH_LIST for a build host that sees no GPU.

    The archs this torch was built for (torch.cuda.get_arch_list()) that nvcc
    supports, the newest also as PTX so that later GPUs can JIT it. None when
    a GPU is visible: torch then builds for the visible GPUs, as usual.
    """
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    supported = set(nvcc_archs(cuda_home))
    from_torch = []
    for a in torch.cuda.get_arch_list():
        m = re.fullmatch(r"sm_(\d+)[a-z]?", a)
        if m:
            n = int(m.group(1))
            from_torch.append(f"{n // 10}.{n % 10}")
    chosen = [a for a in dict.fromkeys(from_torch or FALLBACK_ARCHS) if a in supported]
    if not chosen:
        raise RuntimeError(
            f"none of the archs {from_torch or FALLBACK_ARCHS} is supported by the nvcc in "
            f"{cuda_home} ({sorted(supported)}): set TORCH_CUDA_ARCH_LIST"
        )
    chosen.sort(key=lambda a: tuple(int(x) for x in a.split(".")))
    return ";".join(chosen) + "+PTX"


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "cxx":
        print(" ".join(CXX_FLAGS))
    elif what == "cmake-cxx":  # a ;-list
        print(";".join(cmake_cxx_flags()))
    elif what == "cxx-std":
        print(CXX_STD.removeprefix("c++"))
    elif what == "nvcc":
        print(" ".join(NVCC_FLAGS + [f"-D{d}" for d in DEFINES_CUDA]))
    elif what == "cuda-home":
        print(find_cuda_home())
    elif what == "archs":
        import torch

        print(default_arch_list(torch, find_cuda_home()) or "(visible GPUs)")
    else:
        sys.exit("usage: python build_config.py cxx|nvcc|cmake-cxx|cxx-std|cuda-home|archs")
