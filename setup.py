"""Build of pada_ext._C against the torch that is installed.

The CUDA kernels are built when torch has CUDA (FORCE_ONLY_CPU=1 skips them;
FORCE_CUDA=1 insists, failing at once if torch has no CUDA). CUDA_HOME, if set,
must be a real toolkit; otherwise the one nvcc reports is used. Without
TORCH_CUDA_ARCH_LIST and with no GPU visible, the archs of
build_config.default_arch_list are built (printed). MAX_JOBS is read by
torch.utils.cpp_extension as usual. Compile flags: build_config.py.
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
ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)  # pip runs setup.py without its folder on sys.path
import build_config  # noqa: E402

FORCE_CUDA = os.getenv("FORCE_CUDA", "0") == "1"
FORCE_ONLY_CPU = os.getenv("FORCE_ONLY_CPU", "0") == "1"
WITH_CUDA = not FORCE_ONLY_CPU and (torch.version.cuda is not None or FORCE_CUDA)


def _configure_cuda():
    """Picks the toolkit and the arch list before torch.utils.cpp_extension is imported.

    torch fixes CUDA_HOME when cpp_extension is imported, guessing it from
    nvcc's path (wrong for a wrapper script: the link then fails minutes
    later), and derives the arch list from the visible GPUs (a build host
    without one crashes with an IndexError). Both are decided here, loudly.
    """
    if torch.version.cuda is None:
        sys.exit(
            "FORCE_CUDA=1 needs a CUDA build of torch; this torch "
            f"({torch.__version__}) has none. Use FORCE_ONLY_CPU=1 for a CPU build."
        )
    try:
        cuda_home = build_config.find_cuda_home()
    except RuntimeError as e:
        sys.exit(f"pada_ext: {e}")
    os.environ["CUDA_HOME"] = cuda_home
    print(f"pada_ext: CUDA toolkit {cuda_home}")
    if os.getenv("TORCH_CUDA_ARCH_LIST"):
        print(f"pada_ext: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']} (given)")
        return
    try:
        archs = build_config.default_arch_list(torch, cuda_home)
    except RuntimeError as e:
        sys.exit(f"pada_ext: {e}")
    if archs is None:
        print("pada_ext: building for the visible GPUs (set TORCH_CUDA_ARCH_LIST to choose)")
    else:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        print(f"pada_ext: no GPU visible, TORCH_CUDA_ARCH_LIST={archs} (default)")


if WITH_CUDA:
    _configure_cuda()

from torch.utils.cpp_extension import BuildExtension, CppExtension  # noqa: E402


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _extension():
    sources = _sources("csrc/*.cpp") + _sources("csrc/autograd/*.cpp") + _sources("csrc/cpu/*.cpp")
    sources += _sources("csrc/host/*.cpp")
    cxx = build_config.CXX_FLAGS
    link = build_config.LINK_FLAGS
    if not WITH_CUDA:
        return CppExtension(
            "pada_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    from torch.utils.cpp_extension import CUDAExtension

    return CUDAExtension(
        "pada_ext._C",
        sources + _sources("csrc/cuda/*.cu"),
        define_macros=[(d, None) for d in build_config.DEFINES_CUDA],
        extra_compile_args={"cxx": cxx, "nvcc": build_config.NVCC_FLAGS},
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
