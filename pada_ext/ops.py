"""Public operators. Each checks its arguments, then runs one backend:

* ``"native"``: the compiled C++ (OpenMP) or CUDA kernel, ``torch.ops.pada.*``;
* ``"triton"``: the Triton kernel (CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1``), ``torch.ops.pada_triton.*``;
* ``"reference"``: plain PyTorch, slow and obviously right.

``backend=None`` picks the compiled kernel where there is one.
"""

import numbers

import torch

from . import _args, _dispatch
from . import _grouped_grad_norm_checks as _ggn_checks
from .reference import cross_entropy_with_grad_norm as _xent_reference
from .reference import grouped_grad_norm as _ggn_reference
from .reference import importance_update as _iu_reference
from .reference import sample_with_replacement as _swr_reference

__all__ = [
    "cross_entropy_with_grad_norm",
    "grouped_grad_norm",
    "grouped_sq_norm_accumulate_",
    "importance_update_",
    "sample_with_replacement",
    "segment_grad_norm",
]


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
        from .triton import sample_with_replacement as _swr_triton  # noqa: F401

        return torch.ops.pada_triton.sample_with_replacement(weights, num_samples, seed)
    return torch.ops.pada.sample_with_replacement(weights, num_samples, seed)


def _check_importance_update_args(scores, visited, status, index, values, decay):
    # The Triton kernel has no C++ checks in front of it: the same ones here.
    if scores.dim() != 1 or scores.dtype != torch.float32 or not scores.is_contiguous():
        raise ValueError("importance_update_: scores must be a contiguous 1-D float32 tensor")
    if visited.shape != scores.shape or visited.dtype != torch.bool:
        raise ValueError("importance_update_: visited must be a bool tensor shaped like scores")
    if status.numel() != 2 or status.dtype != torch.int64:
        raise ValueError("importance_update_: status must be a two-element int64 tensor")
    if index.dim() != 1 or index.dtype != torch.int64:
        raise ValueError("importance_update_: index must be a 1-D int64 tensor")
    if values.dim() != 1 or values.numel() != index.numel():
        raise ValueError("importance_update_: values must be 1-D with one value per index")
    if not values.dtype.is_floating_point:
        raise TypeError(f"importance_update_: values must be floating point, got {values.dtype}")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"importance_update_: decay must be in [0, 1], got {decay}")
    if len({t.device for t in (scores, visited, status, index, values)}) != 1:
        raise RuntimeError("importance_update_: all tensors must be on the scores' device")


def importance_update_(
    scores: torch.Tensor,
    visited: torch.Tensor,
    status: torch.Tensor,
    index: torch.Tensor,
    values: torch.Tensor,
    decay: float,
    *,
    backend=None,
) -> None:
    """Scatters per-sample values into an importance table, in batch order.

    For i = 0, 1, ...: if ``visited[index[i]]`` the score becomes
    ``decay * score + (1 - decay) * values[i]``, else ``values[i]`` is stored and
    the entry marked visited. Repeated indices are applied in batch order, as a
    sequential loop would (deterministic on every backend). ``decay=0.5`` is the
    PA&DA authors' rule, ``0`` keeps the last value.

    No host sync. Non-finite values are skipped and counted in ``status[1]``. An
    out-of-range index raises IndexError on CPU (before any change); on CUDA it
    is skipped and counted in ``status[0]`` (raising would need a host sync).

    Args:
        scores: 1-D float32 table (modified in place).
        visited: bool tensor shaped like ``scores`` (modified in place).
        status: two-element int64 counter tensor (modified in place).
        index: 1-D int64 table indices (int32 is converted).
        values: 1-D floating values, one per index.
        decay: in [0, 1].
    """
    if index.dtype == torch.int32:
        index = index.long()
    backend = _dispatch.resolve_backend("importance_update_", backend, scores.device)
    if backend == "reference":
        _iu_reference.importance_update_(scores, visited, status, index, values, decay)
    elif backend == "triton":
        from .triton import importance_update as _iu_triton  # noqa: F401

        _check_importance_update_args(scores, visited, status, index, values, decay)
        torch.ops.pada_triton.importance_update_(scores, visited, status, index, values, decay)
    else:
        torch.ops.pada.importance_update_(scores, visited, status, index, values, float(decay))


def grouped_grad_norm(tensors, group_index, num_groups, *, squared=False, backend=None):
    """Per-group L2 norms of many tensors (e.g. the gradients of a path's ops).

    One pass over all of them: one kernel launch (two on CUDA) and no host
    sync, whatever the number of tensors; float32, float16 and bfloat16
    (mixed in one list) are accumulated in float32 in a fixed order, so the
    result does not depend on the thread count or the grid. The CUDA kernels
    can be captured in a CUDA graph (replays read the same tensors' new
    values); the Triton ones refuse capture.

    Differentiable on every backend: the gradient w.r.t. a tensor t of group
    g is ``t / out[g]`` (0 where ``out[g]`` is 0, as for
    ``torch.linalg.vector_norm``), ``2 t`` with ``squared``; in t's dtype.

    Args:
        tensors: list or tuple of tensors on one device, any shapes and strides
            (dense tensors in any dimension order are read in place; others
            are copied). No None entries (leave out parameters without a grad).
        group_index: group of each tensor: a CPU int64 tensor or a list of
            ints. A CUDA tensor is copied to the host (a sync).
        num_groups: length of the result (>= 0); empty groups give 0.
        squared: return the sums of squares instead of their square roots.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Returns:
        float32 tensor of shape [num_groups] on the tensors' device (CPU for
        an empty list).

    Every backend checks the arguments by the same rules, with the same messages.

    Raises:
        IndexError: a group index out of range (naming the tensor position).
        ValueError: num_groups < 0, or group_index of the wrong length.
        TypeError: an unsupported dtype; a None or non-Tensor entry in
            `tensors` (naming its position), a float or bool group index.
        RuntimeError: tensors on different devices.
    """
    op = "grouped_grad_norm"
    tensors = _args.tensor_list(op, tensors)
    group_index, values = _args.index_arg(op, "group_index", group_index)
    num_groups = _args.int_arg(op, "num_groups", num_groups)
    squared = _args.bool_arg(op, "squared", squared)
    if not tensors and backend not in ("native", None, "auto"):
        # Nothing to launch, and no device to launch on: zeros on the CPU for
        # every backend (the Triton one could not run on CPU tensors).
        if backend not in _dispatch.BACKENDS:
            _dispatch.resolve_backend(op, backend, group_index.device)  # raises
        return _ggn_reference.grouped_grad_norm(tensors, group_index, num_groups, squared, values)
    device = tensors[0].device if tensors else group_index.device
    backend = _dispatch.resolve_backend(op, backend, device)
    if backend == "native":
        return torch.ops.pada.grouped_grad_norm.default(tensors, group_index, num_groups, squared)
    if backend == "triton":
        from .triton import grouped_grad_norm as _ggn_triton  # noqa: F401

        return torch.ops.pada_triton.grouped_grad_norm(tensors, group_index, num_groups, squared)
    return _ggn_reference.grouped_grad_norm(tensors, group_index, num_groups, squared, values)


def grouped_sq_norm_accumulate_(tensors, group_index, table, *, backend=None):
    """``table[g] += sum of squares of the tensors of group g``, in place, no host sync.

    `table` is a contiguous 1-D float32 tensor on the tensors' device; its
    length is the number of groups. Returns `table`. Arguments and errors as
    in :func:`grouped_grad_norm`. Not differentiable: raises RuntimeError if a
    tensor or the table requires grad (in grad mode); use
    ``grouped_grad_norm(..., squared=True)`` for a differentiable sum.
    """
    op = "grouped_sq_norm_accumulate_"
    tensors = _args.tensor_list(op, tensors)
    group_index, values = _args.index_arg(op, "group_index", group_index)
    _args.tensor_arg(op, "table", table)
    _ggn_checks.check_accumulate_no_grad(op, tensors, table)  # custom ops see no grad mode
    backend = _dispatch.resolve_backend(op, backend, table.device)
    if backend == "native":
        torch.ops.pada.grouped_sq_norm_accumulate_.default(tensors, group_index, table)
        return table
    if backend == "triton":
        from .triton import grouped_grad_norm as _ggn_triton  # noqa: F401

        torch.ops.pada_triton.grouped_sq_norm_accumulate_(tensors, group_index, table)
        return table
    return _ggn_reference.grouped_sq_norm_accumulate_(tensors, group_index, table, values)


def segment_grad_norm(flat, offsets, group_of_segment, num_groups, *, squared=False, backend=None):
    """Per-group L2 norms of the segments ``flat[offsets[s]:offsets[s + 1]]``.

    For gradients kept as views into one flat buffer (as DDP buckets do): no
    tensor list to walk. `offsets` (S + 1 entries, non-decreasing) and
    `group_of_segment` (S entries) are CPU int64 tensors or lists of ints.
    All three backends serve it (Triton where no CUDA kernel was built).
    Not differentiable: raises RuntimeError if `flat` requires grad (in grad
    mode); :func:`grouped_grad_norm` over the segments is.
    """
    op = "segment_grad_norm"
    _args.tensor_arg(op, "flat", flat)
    offsets, off_values = _args.index_arg(op, "offsets", offsets)
    group_of_segment, group_values = _args.index_arg(op, "group_of_segment", group_of_segment)
    num_groups = _args.int_arg(op, "num_groups", num_groups)
    squared = _args.bool_arg(op, "squared", squared)
    _ggn_checks.check_no_grad(op, "flat", flat)  # custom ops see no grad mode
    backend = _dispatch.resolve_backend(op, backend, flat.device)
    if backend == "native":
        return torch.ops.pada.segment_grad_norm.default(
            flat, offsets, group_of_segment, num_groups, squared
        )
    if backend == "triton":
        from .triton import grouped_grad_norm as _ggn_triton  # noqa: F401

        return torch.ops.pada_triton.segment_grad_norm(
            flat, offsets, group_of_segment, num_groups, squared
        )
    return _ggn_reference.segment_grad_norm(
        flat, offsets, group_of_segment, num_groups, squared, (off_values, group_values)
    )


_XENT = "cross_entropy_with_grad_norm"
_XENT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_XENT_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # as at::Reduction


def _check_xent_args(logits, target, reduction, ignore_index, label_smoothing):
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"{_XENT}: logits and target must be Tensors")
    if logits.dim() != 2:
        raise ValueError(f"{_XENT}: logits must be 2-D [N, C], got shape {tuple(logits.shape)}")
    if logits.dtype not in _XENT_DTYPES:
        raise TypeError(f"{_XENT}: logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.shape[1] < 1:
        raise ValueError(
            f"{_XENT}: logits need at least one class, got shape {tuple(logits.shape)}"
        )
    if target.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{_XENT}: target must hold class indices (int64 or int32), got {target.dtype}"
        )
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{_XENT}: target must have shape [N] = [{logits.shape[0]}], got {tuple(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(f"{_XENT}: target is on {target.device} but logits are on {logits.device}")
    if reduction not in _XENT_REDUCTIONS:
        raise ValueError(
            f"{_XENT}: reduction must be one of {tuple(_XENT_REDUCTIONS)}, got {reduction!r}"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{_XENT}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{_XENT}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy_with_grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    backend=None,
):
    """``F.cross_entropy`` and the per-sample norm of its gradient, in one pass.

    Returns ``(loss, grad_norm)``. ``loss`` (and its gradient w.r.t. ``logits``)
    is that of ``torch.nn.functional.cross_entropy(logits, target, reduction=...,
    ignore_index=..., label_smoothing=...)``, in the logits' dtype (accumulated
    in float32). ``grad_norm[i] = ||softmax(logits[i]) - t_i||_2``, the norm of
    the gradient of row i's own loss w.r.t. its logits, with ``t_i`` the one-hot
    target smoothed as torch smooths it: float32, shape [N], not differentiable.
    It is the per-sample score of PA&DA's data importance sampling, for free.

    ``grad_norm`` is 0 for ignored rows and NaN for rows whose norm is not
    finite (NaN or +inf logits, or all -inf): importance tables
    (:func:`importance_update_`, the samplers) skip NaN scores, so such a row
    cannot poison them, and its loss is NaN as torch's is, so it is still seen.

    Args:
        logits: [N, C] float32, float16 or bfloat16, on CPU or CUDA (any strides).
        target: [N] int64 or int32 class indices in [0, C), or ``ignore_index``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: a target out of range (naming the first such row; on CUDA a
            device-side assert, as torch's), shapes, devices or reduction.
        TypeError: dtypes of logits or target.
    """
    _check_xent_args(logits, target, reduction, ignore_index, label_smoothing)
    backend = _dispatch.resolve_backend(f"{_XENT}_fwd", backend, logits.device)
    target = target.long()  # a no-op for int64
    if backend == "reference":
        return _xent_reference.cross_entropy_with_grad_norm(
            logits, target, reduction, ignore_index, label_smoothing
        )
    if backend == "triton":
        from .triton import cross_entropy_with_grad_norm as _xent_triton  # noqa: F401

        fwd = torch.ops.pada_triton.cross_entropy_with_grad_norm_fwd.default
    else:  # differentiable through a C++ autograd kernel (csrc/autograd/)
        fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd.default
    loss, grad_norm, _ = fwd(
        logits, target, _XENT_REDUCTIONS[reduction], int(ignore_index), float(label_smoothing)
    )
    return loss, grad_norm
