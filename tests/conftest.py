"""Shared test set-up.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors:
TRITON_INTERPRET must be set before any kernel is defined, hence here.
"""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pada_ext  # noqa: E402,F401  (registers the operators)

# The end-to-end package (python/pada_nas) is tested from the source tree.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def triton_usable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def triton_device() -> str:
    """Where Triton kernels run in this session: the GPU, or CPU tensors when interpreted."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine each
    parallel region can wait milliseconds for the second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


requires_triton = pytest.mark.skipif(not triton_usable(), reason="triton is not installed")
