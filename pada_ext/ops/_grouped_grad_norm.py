"""pada_ext.ops.grouped_grad_norm, grouped_sq_norm_accumulate_ and segment_grad_norm:
argument rules, backend choice, docs.

Kernels: csrc/cpu|cuda/grouped_grad_norm.*, pada_ext/triton/grouped_grad_norm.py;
reference: pada_ext/reference/grouped_grad_norm.py; shared rules: _grouped_grad_norm_checks.py.
"""

import torch

from .. import _args, _dispatch, _triton_kernels
from .. import _grouped_grad_norm_checks as _ggn_checks
from ..reference import grouped_grad_norm as _ggn_reference


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
    if not tensors and backend not in ("native", None):
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
        return _triton_kernels.call(
            "grouped_grad_norm", device, tensors, group_index, num_groups, squared
        )
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
    _ggn_checks.check_accumulate_no_grad(op, tensors, table)  # the caller's grad mode
    backend = _dispatch.resolve_backend(op, backend, table.device)
    if backend == "native":
        torch.ops.pada.grouped_sq_norm_accumulate_.default(tensors, group_index, table)
        return table
    if backend == "triton":
        _triton_kernels.call(
            "grouped_sq_norm_accumulate_", table.device, tensors, group_index, table
        )
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
    _ggn_checks.check_no_grad(op, "flat", flat)  # the caller's grad mode
    backend = _dispatch.resolve_backend(op, backend, flat.device)
    if backend == "native":
        return torch.ops.pada.segment_grad_norm.default(
            flat, offsets, group_of_segment, num_groups, squared
        )
    if backend == "triton":
        return _triton_kernels.call(
            "segment_grad_norm", flat.device, flat, offsets, group_of_segment, num_groups, squared
        )
    return _ggn_reference.segment_grad_norm(
        flat, offsets, group_of_segment, num_groups, squared, (off_values, group_values)
    )
