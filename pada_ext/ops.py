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

    On CUDA the weights are validated before drawing, which waits for the GPU
    (one small pinned read-back): the call cannot be captured in a CUDA graph
    (it raises if the stream is capturing) and is tagged
    ``torch.Tag.cudagraph_unsafe`` where torch has that tag, so torch.compile's
    cudagraph trees leave it out of their graphs.

    Raises:
        ValueError: negative, NaN or infinite weights (naming the first such
            index), all-zero, empty or non-1-D weights, negative num_samples.
        TypeError: weights of another dtype.
        RuntimeError: called while a CUDA graph is being captured.
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


_IU = "importance_update_"


def _check_importance_update_args(scores, visited, status, index, values, decay):
    # One validation in front of every backend (the reference and Triton ones
    # have no C++ checks of their own).
    for name, t in (
        ("scores", scores),
        ("visited", visited),
        ("status", status),
        ("index", index),
        ("values", values),
    ):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_IU}: {name} must be a Tensor, got {type(t).__name__}")
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real):
        raise TypeError(f"{_IU}: decay must be a float, got {decay!r}")
    if scores.dim() != 1 or scores.dtype != torch.float32 or not scores.is_contiguous():
        raise ValueError("importance_update_: scores must be a contiguous 1-D float32 tensor")
    if visited.shape != scores.shape or visited.dtype != torch.bool:
        raise ValueError("importance_update_: visited must be a bool tensor shaped like scores")
    if status.numel() != 2 or status.dtype != torch.int64:
        raise ValueError("importance_update_: status must be a two-element int64 tensor")
    if index.dtype != torch.int64:
        raise TypeError(f"{_IU}: index must be int64 (or int32), got {index.dtype}")
    if index.dim() != 1:
        raise ValueError(f"{_IU}: index must be 1-D, got shape {tuple(index.shape)}")
    if values.dim() != 1 or values.numel() != index.numel():
        raise ValueError(
            f"{_IU}: values must be 1-D with one value per index, got shape "
            f"{tuple(values.shape)} for {index.numel()} indices"
        )
    if not values.dtype.is_floating_point:
        raise TypeError(f"importance_update_: values must be floating point, got {values.dtype}")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"importance_update_: decay must be in [0, 1], got {decay}")
    if len({t.device for t in (scores, visited, status, index, values)}) != 1:
        raise RuntimeError("importance_update_: all tensors must be on the scores' device")


def _negative_values(values: torch.Tensor, table_dtype: torch.dtype) -> torch.Tensor:
    """Where `values` are finite in the table's dtype and negative (no host sync)."""
    stored = values.to(table_dtype)
    return (stored < 0) & stored.isfinite()


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", lambda: False)())


def _screen_importance_values(scores, index, values):
    """(index, values) with the values the table cannot take dealt with, no host sync:
    a value that overflows float32 becomes NaN (skipped and counted in status[1]
    like any non-finite value); a negative one raises on CPU, naming it, and on
    other devices gets index -1, which the kernel skips and counts in status[0]."""
    if values.dtype.itemsize > scores.dtype.itemsize:  # float64: finite, yet inf as float32
        values = torch.where(values.to(scores.dtype).isfinite(), values, float("nan"))
    negative = _negative_values(values, scores.dtype)
    if values.device.type == "cpu":
        if _compiling():  # no data-dependent branch in a graph: an assert op instead
            torch._assert_async(~negative.any(), f"{_IU}: a value is negative (scores >= 0)")
            return index, values
        bad = negative.nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            raise ValueError(
                f"{_IU}: values[{i}] = {float(values[i])} (for index[{i}] = {int(index[i])}) "
                "is negative; importance scores must be >= 0"
            )
        return index, values
    return torch.where(negative, -1, index), values


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

    No host sync. Non-finite values, and values that are not finite once
    rounded to float32, are skipped and counted in ``status[1]``. An
    out-of-range index or a negative value raises (IndexError, ValueError) on
    CPU, before any change; on CUDA the entry is skipped and counted in
    ``status[0]`` (raising would need a host sync).

    Args:
        scores: 1-D float32 table (modified in place).
        visited: bool tensor shaped like ``scores`` (modified in place).
        status: two-element int64 counter tensor (modified in place).
        index: 1-D int64 table indices (int32 is converted).
        values: 1-D floating values, one per index, >= 0.
        decay: in [0, 1].

    Raises:
        TypeError: a non-Tensor argument, or dtypes of index or values.
        ValueError: shapes, decay out of [0, 1], a negative value (CPU; naming it).
        IndexError: an index out of range (CPU; naming it).
    """
    if isinstance(index, torch.Tensor) and index.dtype == torch.int32:
        index = index.long()
    _check_importance_update_args(scores, visited, status, index, values, decay)
    index, values = _screen_importance_values(scores, index, values)
    backend = _dispatch.resolve_backend("importance_update_", backend, scores.device)
    if backend == "reference":
        _iu_reference.importance_update_(scores, visited, status, index, values, decay)
    elif backend == "triton":
        from .triton import importance_update as _iu_triton  # noqa: F401

        torch.ops.pada_triton.importance_update_(scores, visited, status, index, values, decay)
    else:
        torch.ops.pada.importance_update_(scores, visited, status, index, values, float(decay))


_NORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _as_index(name, index):
    """An index argument as the CPU int64 tensor the kernels read on the host."""
    if not isinstance(index, torch.Tensor):
        return torch.tensor(list(index), dtype=torch.int64)
    if index.device.type != "cpu":
        return index.cpu()  # a host sync; keep group indices on the CPU to avoid it
    return index


def _check_grouped_args(op, tensors, group_index, num_groups):
    """The compiled kernels' checks, for the backends that have none of their own."""
    if num_groups < 0:
        raise ValueError(f"{op}: num_groups must be >= 0, got {num_groups}")
    if group_index.dtype != torch.int64:
        raise TypeError(f"{op}: group_index must be int64, got {group_index.dtype}")
    if group_index.dim() != 1 or group_index.numel() != len(tensors):
        raise ValueError(
            f"{op}: group_index must be 1-D with {len(tensors)} entries, "
            f"got shape {tuple(group_index.shape)}"
        )
    groups = group_index.tolist()
    for i, t in enumerate(tensors):
        if t.device != tensors[0].device:
            raise RuntimeError(
                f"{op}: all tensors must be on one device; tensors[{i}] is on {t.device} "
                f"but tensors[0] is on {tensors[0].device}"
            )
        if t.dtype not in _NORM_DTYPES:
            raise TypeError(
                f"{op}: tensors[{i}] has dtype {t.dtype}; supported are float32, float16 "
                "and bfloat16"
            )
        if not 0 <= groups[i] < num_groups:
            raise IndexError(
                f"{op}: group_index[{i}] = {groups[i]} (for tensors[{i}]) is out of range "
                f"for num_groups = {num_groups}"
            )


def grouped_grad_norm(tensors, group_index, num_groups, *, squared=False, backend=None):
    """Per-group L2 norms of many tensors (e.g. the gradients of a path's ops).

    One pass over all of them: one kernel launch (two on CUDA) and no host
    sync, whatever the number of tensors; float32, float16 and bfloat16
    (mixed in one list) are accumulated in float32 in a fixed order, so the
    result does not depend on the thread count or the grid.

    Args:
        tensors: sequence of tensors on one device, any shapes and strides
            (dense tensors in any dimension order are read in place; others
            are copied).
        group_index: group of each tensor: a CPU int64 tensor or a list of
            ints. A CUDA tensor is copied to the host (a sync).
        num_groups: length of the result (>= 0); empty groups give 0.
        squared: return the sums of squares instead of their square roots.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Returns:
        float32 tensor of shape [num_groups] on the tensors' device (CPU for
        an empty list).

    Raises:
        IndexError: a group index out of range (naming the tensor position).
        ValueError: num_groups < 0, or group_index of the wrong length.
        TypeError: an unsupported dtype.
        RuntimeError: tensors on different devices.
    """
    op = "grouped_grad_norm"
    tensors = list(tensors)
    group_index = _as_index("group_index", group_index)
    device = tensors[0].device if tensors else group_index.device
    backend = _dispatch.resolve_backend(op, backend, device)
    if backend == "native":
        return torch.ops.pada.grouped_grad_norm.default(tensors, group_index, num_groups, squared)
    _check_grouped_args(op, tensors, group_index, num_groups)
    if backend == "triton":
        from .triton import grouped_grad_norm as _ggn_triton  # noqa: F401

        return torch.ops.pada_triton.grouped_grad_norm(tensors, group_index, num_groups, squared)
    return _ggn_reference.grouped_grad_norm(tensors, group_index, num_groups, squared)


def grouped_sq_norm_accumulate_(tensors, group_index, table, *, backend=None):
    """``table[g] += sum of squares of the tensors of group g``, in place, no host sync.

    `table` is a contiguous 1-D float32 tensor on the tensors' device; its
    length is the number of groups. Returns `table`. Arguments and errors as
    in :func:`grouped_grad_norm`.
    """
    op = "grouped_sq_norm_accumulate_"
    tensors = list(tensors)
    group_index = _as_index("group_index", group_index)
    backend = _dispatch.resolve_backend(op, backend, table.device)
    if backend == "native":
        torch.ops.pada.grouped_sq_norm_accumulate_.default(tensors, group_index, table)
        return table
    _check_grouped_args(op, tensors, group_index, table.numel())
    if backend == "triton":
        from .triton import grouped_grad_norm as _ggn_triton  # noqa: F401

        torch.ops.pada_triton.grouped_sq_norm_accumulate_(tensors, group_index, table)
        return table
    return _ggn_reference.grouped_sq_norm_accumulate_(tensors, group_index, table)


def segment_grad_norm(flat, offsets, group_of_segment, num_groups, *, squared=False, backend=None):
    """Per-group L2 norms of the segments ``flat[offsets[s]:offsets[s + 1]]``.

    For gradients kept as views into one flat buffer (as DDP buckets do): no
    tensor list to walk. `offsets` (S + 1 entries, non-decreasing) and
    `group_of_segment` (S entries) are CPU int64 tensors or lists of ints.
    """
    op = "segment_grad_norm"
    offsets = _as_index("offsets", offsets)
    group_of_segment = _as_index("group_of_segment", group_of_segment)
    backend = _dispatch.resolve_backend(op, backend, flat.device)
    if backend == "triton":
        raise RuntimeError(f"pada_ext.ops.{op}: no Triton kernel; use backend='native'")
    if backend == "native":
        return torch.ops.pada.segment_grad_norm.default(
            flat, offsets, group_of_segment, num_groups, squared
        )
    return _ggn_reference.segment_grad_norm(flat, offsets, group_of_segment, num_groups, squared)


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
