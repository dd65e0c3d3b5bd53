"""pada_ext: fused kernels and samplers for PA&DA importance sampling.

Importing the package loads the compiled operators (``torch.ops.pada.*``),
their fake (meta) implementations for ``torch.compile`` and, where this build
has no CUDA kernel and triton is installed, the Triton kernels as their CUDA
kernels (``pada_ext/_triton_kernels.py``).
"""

import torch  # noqa: F401  (the compiled library needs torch's symbols first)

try:
    from . import _C  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "pada_ext._C is missing: build it with `pip install --no-build-isolation .` "
        "(or `-e .`). If you run from the source tree, the source folder shadows the "
        "installed package: use an editable install or run from another directory."
    ) from e

from . import _triton_kernels, fake, ops  # noqa: E402,F401  (Triton: CUDA kernel where none was built)
from .importance_sampler import ImportanceSampler  # noqa: E402
from .indexed_dataset import IndexedDataset  # noqa: E402
from .path_sampler import PathSampler  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ImportanceSampler", "IndexedDataset", "PathSampler", "ops"]
