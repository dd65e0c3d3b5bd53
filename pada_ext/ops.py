"""Public operators. Each checks its arguments, then runs one backend:

* ``"native"``: the compiled C++ (OpenMP) or CUDA kernel, ``torch.ops.pada.*``;
* ``"triton"``: the Triton kernel (CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1``), ``torch.ops.pada_triton.*``;
* ``"reference"``: plain PyTorch, slow and obviously right.

``backend=None`` picks the compiled kernel where there is one.
"""

import numbers

import torch

from . import _dispatch
from .reference import sample_with_replacement as _swr_reference

__all__ = ["sample_with_replacement"]


def _check_sample_args(weights, num_samples):
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"sample_with_replacement: weights must be a Tensor, got {type(weights)}")
    if weights.dim() != 1:
        raise ValueError(
            f"sample_with_replacement: weights must be 1-D, got shape {tuple(weights.shape)}"
        )
    if weights.numel() == 0:
        raise ValueError("sample_with_replacement: weights is empty")
    if weights.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"sample_with_replacement: weights must be float32 or float64, got {weights.dtype}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
        raise TypeError(f"sample_with_replacement: num_samples must be an int, got {num_samples!r}")
    if num_samples < 0:
        raise ValueError(f"sample_with_replacement: num_samples must be >= 0, got {num_samples}")


def sample_with_replacement(
    weights: torch.Tensor, num_samples: int, *, generator=None, backend=None
) -> torch.Tensor:
    """Draws `num_samples` int64 indices i.i.d. with P(i) = weights[i] / weights.sum().

    Exact at any size (no float32 cumulative sum, no 2^24 limit), O(N + M) work,
    and for a given generator state the same output whatever the thread count.

    Args:
        weights: 1-D float32 or float64 tensor on CPU or CUDA; finite, >= 0,
            not all zero, not necessarily normalised. Zero weights are never drawn.
        num_samples: number of indices to draw (>= 0).
        generator: the ``torch.Generator`` to take randomness from (default: the
            default generator of the weights' device, so ``torch.manual_seed``
            governs it). One int64 is drawn from it per call.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: negative, NaN or infinite weights (naming the first such
            index), all-zero, empty or non-1-D weights, negative num_samples.
        TypeError: weights of another dtype.
    """
    _check_sample_args(weights, num_samples)
    backend = _dispatch.resolve_backend("sample_with_replacement", backend, weights.device)
    seed = _dispatch.draw_seed(generator, weights.device)
    if backend == "reference":
        return _swr_reference.sample_with_replacement(weights, num_samples, seed)
    if backend == "triton":
        from .triton import sample_with_replacement as _swr_triton  # noqa: F401

        return torch.ops.pada_triton.sample_with_replacement(weights, num_samples, seed)
    return torch.ops.pada.sample_with_replacement(weights, num_samples, seed)
