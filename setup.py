"""Build of pada_ext._C against the torch that is installed.

Environment: FORCE_CUDA=1 builds the CUDA kernels even when torch.version.cuda
is unset; FORCE_ONLY_CPU=1 never builds them; TORCH_CUDA_ARCH_LIST and MAX_JOBS
are read by torch.utils.cpp_extension as usual.
"""

import glob
import os
import sys
import sysconfig

from setuptools import find_packages, setup


def _import_torch():
    """Imports the user's torch, also from inside pip's isolated build env.

    pip's build isolation hides the environment's site-packages, so a plain
    `pip install .` would otherwise need torch as a build requirement, and pip
    would fetch the newest (CUDA) torch to build against instead of the one
    installed. We look for torch where the running interpreter keeps its packages.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        for key in ("purelib", "platlib"):
            path = sysconfig.get_paths()[key]
            if path not in sys.path:
                sys.path.append(path)
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit(
                "pada_ext builds against the installed PyTorch, and none was found. "
                "Install torch>=2.4 first, then: pip install --no-build-isolation ."
            )
    import torch

    return torch


torch = _import_torch()
from torch.utils.cpp_extension import BuildExtension, CppExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
FORCE_CUDA = os.getenv("FORCE_CUDA", "0") == "1"
FORCE_ONLY_CPU = os.getenv("FORCE_ONLY_CPU", "0") == "1"
WITH_CUDA = not FORCE_ONLY_CPU and (torch.version.cuda is not None or FORCE_CUDA)


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _extension():
    sources = _sources("csrc/*.cpp") + _sources("csrc/autograd/*.cpp") + _sources("csrc/cpu/*.cpp")
    # No FMA contraction: host and device must round the alias math identically.
    cxx = ["-O3", "-ffp-contract=off"] + (["-fopenmp"] if sys.platform != "darwin" else [])
    link = ["-fopenmp"] if sys.platform != "darwin" else []
    if not WITH_CUDA:
        return CppExtension(
            "pada_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    from torch.utils.cpp_extension import CUDA_HOME, CUDAExtension

    if CUDA_HOME is None:
        sys.exit(
            "FORCE_CUDA=1 needs a CUDA build of torch and a CUDA toolkit (CUDA_HOME); "
            f"this torch ({torch.__version__}) has none. Use FORCE_ONLY_CPU=1 for a CPU build."
        )
    nvcc = [
        "-O3",
        "--expt-relaxed-constexpr",
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-D__CUDA_NO_HALF2_OPERATORS__",
    ]
    return CUDAExtension(
        "pada_ext._C",
        sources + _sources("csrc/cuda/*.cu"),
        define_macros=[("WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
    )


setup(
    name="pada_ext",
    version="0.1.0",
    description="Fused kernels and samplers for PA&DA importance sampling in PyTorch",
    packages=find_packages(include=["pada_ext", "pada_ext.*"]),
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={"triton": ["triton>=3.0"], "test": ["pytest", "scipy"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
