"""pada_ext.ops.sample_with_replacement: argument rules, backend choice, docs.

Kernels: csrc/cpu|cuda/sample_with_replacement.*, pada_ext/triton/sample_with_replacement.py;
reference: pada_ext/reference/sample_with_replacement.py.
"""

import torch

from .. import _args, _dispatch, _triton_kernels
from ..reference import sample_with_replacement as _swr_reference


def _normalise_sample_args(weights, num_samples, generator):
    """Python-level types only; the tensor rules are the op's (every backend's)."""
    op = "sample_with_replacement"
    _args.tensor_arg(op, "weights", weights)
    num_samples = _args.int_arg(op, "num_samples", num_samples)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{op}: generator must be a torch.Generator or None, got {generator!r} "
            f"({type(generator).__name__})"
        )
    return num_samples


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

    On CUDA the weights are validated before drawing, which waits for the GPU
    (one small pinned read-back): the call cannot be captured in a CUDA graph
    (it raises if the stream is capturing) and is tagged
    ``torch.Tag.cudagraph_unsafe`` where torch has that tag, so torch.compile's
    cudagraph trees leave it out of their graphs.

    Every backend checks the arguments by the same rules, with the same messages.

    Raises:
        ValueError: negative, NaN or infinite weights (naming the first such
            index), all-zero, empty or non-1-D weights, negative num_samples
            (or one beyond int64).
        TypeError: weights of another dtype or not a Tensor, num_samples not
            an int (floats and bools included), generator not a torch.Generator.
        RuntimeError: called while a CUDA graph is being captured.
    """
    num_samples = _normalise_sample_args(weights, num_samples, generator)
    backend = _dispatch.resolve_backend("sample_with_replacement", backend, weights.device)
    seed = _dispatch.draw_seed(generator, weights.device)
    if backend == "reference":
        return _swr_reference.sample_with_replacement(weights, num_samples, seed)
    if backend == "triton":
        return _triton_kernels.call(
            "sample_with_replacement", weights.device, weights, num_samples, seed
        )
    return torch.ops.pada.sample_with_replacement(weights, num_samples, seed)
