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
from . import _cross_entropy_composite as _xent_composite
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
    backend = _dispatch.resolve_backend("importance_update_", backend, scores.device)
    if backend == "native" and values.device.type == "cpu" and not _compiling():
        # The CPU kernel screens the values itself, in the pass that checks the indices.
        torch.ops.pada.importance_update_(scores, visited, status, index, values, float(decay))
        return
    index, values = _screen_importance_values(scores, index, values)
    if backend == "reference":
        _iu_reference.importance_update_(scores, visited, status, index, values, decay)
    elif backend == "triton":
        from .triton import importance_update as _iu_triton  # noqa: F401

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
_XENT_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_XENT_INDEX_DTYPES = (torch.int64, torch.int32, torch.uint8)  # torch takes int64, uint8
_XENT_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # as at::Reduction


def _autocast_enabled(device_type):
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def _xent_normalise(logits, target, weight, reduction, ignore_index, label_smoothing):
    """Checks what the op's schema cannot express (Python types, which path a
    target's dtype and shape select) and returns label_smoothing as a float;
    the values of the kernels' arguments are checked by the op itself."""
    for name, v in (("logits", logits), ("target", target)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{_XENT}: {name} must be a Tensor, got {type(v).__name__}")
    if weight is not None and not isinstance(weight, torch.Tensor):
        raise TypeError(f"{_XENT}: weight must be a Tensor or None, got {type(weight).__name__}")
    if not isinstance(reduction, str) or reduction not in _XENT_REDUCTIONS:
        raise ValueError(
            f"{_XENT}: reduction must be one of {tuple(_XENT_REDUCTIONS)}, got {reduction!r}"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{_XENT}: ignore_index must be an int, got {ignore_index!r}")
    if isinstance(label_smoothing, torch.Tensor):  # F.cross_entropy takes a 0-dim tensor too
        if label_smoothing.dim() != 0 or not label_smoothing.is_floating_point():
            raise TypeError(
                f"{_XENT}: label_smoothing must be a float or a 0-dim floating tensor, got a "
                f"{label_smoothing.dtype} tensor of shape {tuple(label_smoothing.shape)}"
            )
    elif isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"{_XENT}: label_smoothing must be a float, got {label_smoothing!r}")
    label_smoothing = float(label_smoothing)
    if not logits.is_floating_point():
        raise TypeError(
            f"{_XENT}: logits must be floating point, not an integer tensor, got {logits.dtype}"
        )
    if logits.dim() < 1:
        raise ValueError(f"{_XENT}: logits must be [C], [N, C] or [N, C, d1, ...], got a scalar")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise TypeError(
                f"{_XENT}: target of dtype {target.dtype} and shape {tuple(target.shape)}: class "
                "indices must be int64, int32 or uint8, and probabilities (soft targets) must "
                f"have the logits' shape {tuple(logits.shape)}"
            )
    elif target.dtype not in _XENT_INDEX_DTYPES:
        raise TypeError(
            f"{_XENT}: target must hold class indices (int64, int32 or uint8) or probabilities "
            f"shaped as the logits, got {target.dtype}"
        )
    else:
        want = logits.shape[:1] + logits.shape[2:] if logits.dim() > 1 else ()
        if target.shape != want:
            raise ValueError(
                f"{_XENT}: target must have shape {list(want)} for logits of shape "
                f"{list(logits.shape)}, got {list(target.shape)}"
            )
    return label_smoothing


def cross_entropy_with_grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight=None,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    backend=None,
):
    """``F.cross_entropy`` and the per-sample norm of its gradient, in one pass.

    Returns ``(loss, grad_norm)``. ``loss`` (and its gradient w.r.t. ``logits``)
    is that of ``torch.nn.functional.cross_entropy(logits, target, weight,
    reduction=..., ignore_index=..., label_smoothing=...)``, with its dtypes
    (under ``torch.autocast`` 16-bit logits run in float32, as torch's do).

    A sample is a row ``i`` of [N, C] logits, or a position ``(i, j, ...)`` of
    [N, C, d1, ...] logits (class dim 1). ``grad_norm`` has the shape of the
    samples ([N] or [N, d1, ...], [] for unbatched [C] logits), is not
    differentiable, float32 (float64 for float64 logits), and is the L2 norm
    over the classes of the gradient of the sample's own, unweighted loss
    ``l_i = -sum_c t_ic log softmax(z_i)_c`` w.r.t. its logits ``z_i``::

        grad_norm_i = || softmax(z_i) * sum_c t_ic - t_i ||_2

    with ``t_i`` the sample's target distribution smoothed as torch smooths it,
    ``(1 - label_smoothing) * t + label_smoothing / C``, where ``t`` is the
    one-hot class (class indices) or the given probabilities (soft targets,
    which need not sum to 1). ``weight`` scales the loss, not the scores, so
    that scores stay comparable across classes; ``reduction`` does not enter.
    It is the per-sample score of PA&DA's data importance sampling, for free.

    ``grad_norm`` is 0 for ignored samples and NaN where the norm is not
    finite (NaN or +inf logits, or all -inf): importance tables
    (:func:`importance_update_`, the samplers) skip NaN scores, so such a row
    cannot poison them, and its loss is NaN as torch's is, so it is still seen.

    Class-index targets with float32/16 or bfloat16 logits and no ``weight``
    run the fused kernels of ``backend`` ([N, C, d1, ...] as rows of C); class
    weights, soft targets and float64 logits take an exact ATen path on every
    backend but ``"reference"`` (loss from F.cross_entropy, norm in float32, or
    float64 for float64 logits, by the formula above).

    Args:
        logits: [C], [N, C] or [N, C, d1, ...] floating point, on CPU or CUDA
            (any strides).
        target: class indices (int64, int32 or uint8; [N, d1, ...], [] for [C]
            logits) in [0, C) or ``ignore_index``; or probabilities with the
            logits' shape and a floating dtype.
        weight: None or [C] class weights, as F.cross_entropy's.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: a float in [0, 1] (or a 0-dim floating tensor, read
            on the host, as torch does).
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: a target out of range (naming the first such row on the
            fused path; on CUDA a device-side assert, as torch's), shapes,
            devices, reduction or label_smoothing's range.
        TypeError: non-tensor logits or target, dtypes (float class-index
            targets included), a non-float label_smoothing or ignore_index.
    """
    # The common call (CPU [N, C] logits of a kernel dtype, an int64 [N] target,
    # Python scalars, no weight) goes straight to the op, which checks the
    # values itself with the same messages: the general checks below cost about
    # a sixth of a whole forward + backward on small batches.
    if (
        weight is None
        and backend is None
        and type(label_smoothing) is float
        and type(ignore_index) is int
        and type(reduction) is str
        and isinstance(logits, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and logits.dim() == 2
        and target.dim() == 1
        and target.dtype == torch.int64
        and logits.device.type == "cpu"
        and logits.dtype in _XENT_KERNEL_DTYPES
        and target.shape[0] == logits.shape[0]
        and reduction in _XENT_REDUCTIONS
    ):
        loss, grad_norm, _ = torch.ops.pada.cross_entropy_with_grad_norm_fwd.default(
            logits, target, _XENT_REDUCTIONS[reduction], ignore_index, label_smoothing
        )
        return loss, grad_norm
    label_smoothing = _xent_normalise(
        logits, target, weight, reduction, ignore_index, label_smoothing
    )
    backend = _dispatch.resolve_backend(f"{_XENT}_fwd", backend, logits.device)
    unbatched = logits.dim() == 1
    if unbatched:  # [C] with a [] target (or [C] probabilities): one sample
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    composite = (
        weight is not None or target.is_floating_point() or logits.dtype not in _XENT_KERNEL_DTYPES
    )
    if backend == "reference" or composite:
        # These paths do not reach the op: its range check, with its message.
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{_XENT}: label_smoothing must be in [0, 1], got {label_smoothing}")
        if backend == "reference":
            loss, grad_norm = _xent_reference.cross_entropy_with_grad_norm(
                logits, target, reduction, ignore_index, label_smoothing, weight
            )
        else:
            loss, grad_norm = _xent_composite.cross_entropy_with_grad_norm(
                logits, target, weight, reduction, ignore_index, label_smoothing
            )
    else:
        sample_shape = target.shape
        if logits.dim() > 2:  # one row of C classes per position
            logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
            target = target.reshape(-1)
        target = target.long()  # a no-op for int64
        if backend == "triton":
            from .triton import cross_entropy_with_grad_norm as _xent_triton  # noqa: F401

            fwd = torch.ops.pada_triton.cross_entropy_with_grad_norm_fwd.default
            # The native op's autocast kernel does this in C++; a Python custom op has none.
            if logits.dtype != torch.float32 and _autocast_enabled(logits.device.type):
                logits = logits.float()
        else:  # differentiable through a C++ autograd kernel (csrc/autograd/)
            fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd.default
        loss, grad_norm, _ = fwd(
            logits, target, _XENT_REDUCTIONS[reduction], int(ignore_index), label_smoothing
        )
        if len(sample_shape) != 1:
            grad_norm = grad_norm.reshape(sample_shape)
            if reduction == "none":
                loss = loss.reshape(sample_shape)
    if unbatched:
        grad_norm = grad_norm.squeeze(0)
        if reduction == "none":
            loss = loss.squeeze(0)
    return loss, grad_norm
