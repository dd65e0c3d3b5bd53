"""Argument rules of grouped_grad_norm, grouped_sq_norm_accumulate_ and
segment_grad_norm, as the compiled kernels state them (plan_tensors,
plan_segments, check_accumulate_args in csrc/host/grouped_grad_norm.cpp).

The Triton kernels, the references and the fake kernels all run these, so
every backend raises the same exception with the same message: change a rule
here and in the C++ together (tests/test_grouped_grad_norm_args.py compares
them). The fake kernels run them on fake tensors too; the checks that need
index values run only when given the values.
"""

import torch

from ._args import check as _check

_NORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _shape(t):
    return list(t.shape)  # printed as C++ prints sizes(): [2, 3]


def check_no_grad(op, name, t):
    """The non-differentiable ops refuse inputs that require grad (in grad mode).

    Run by pada_ext.ops before any backend, where grad mode is still the
    caller's (below the dispatcher's autograd layer it may not be)."""
    _check(
        RuntimeError,
        not (torch.is_grad_enabled() and t.requires_grad),
        lambda: (
            f"{op} is not differentiable, but {name} requires grad: detach it or call it "
            "under torch.no_grad() (grouped_grad_norm is differentiable)"
        ),
    )


def check_index_tensor(op, name, t, length):
    _check(TypeError, t.dtype == torch.int64, lambda: f"{op}: {name} must be int64, got {t.dtype}")
    _check(
        ValueError,
        t.device.type == "cpu",
        lambda: f"{op}: {name} must be a CPU tensor (it is read on the host), got {t.device}",
    )
    _check(
        ValueError,
        t.dim() == 1 and t.numel() == length,
        lambda: f"{op}: {name} must be 1-D with {length} entries, got shape {_shape(t)}",
    )


def check_tensors(op, tensors, group_index, num_groups, groups):
    """plan_tensors. `groups`: the values of group_index (a list), or None to
    skip the checks that need them (the fake kernels)."""
    _check(ValueError, num_groups >= 0, lambda: f"{op}: num_groups must be >= 0, got {num_groups}")
    check_index_tensor(op, "group_index", group_index, len(tensors))
    for i, t in enumerate(tensors):
        _check(
            RuntimeError,
            t.device == tensors[0].device,
            lambda i=i, t=t: (
                f"{op}: all tensors must be on one device; tensors[{i}] is on "
                f"{t.device} but tensors[0] is on {tensors[0].device}"
            ),
        )
        _check(
            TypeError,
            t.dtype in _NORM_DTYPES,
            lambda i=i, t=t: (
                f"{op}: tensors[{i}] has dtype {t.dtype}; supported are float32, "
                "float16 and bfloat16"
            ),
        )
        if groups is not None:
            g = groups[i]
            _check(
                IndexError,
                0 <= g < num_groups,
                lambda i=i, g=g: (
                    f"{op}: group_index[{i}] = {g} (for tensors[{i}]) is out of "
                    f"range for num_groups = {num_groups}"
                ),
            )


def check_accumulate_no_grad(op, tensors, table):
    for i, t in enumerate(tensors):
        check_no_grad(op, f"tensors[{i}]", t)
    check_no_grad(op, "table", table)


def check_accumulate(op, tensors, group_index, table, groups):
    """check_accumulate_args, then plan_tensors."""
    check_accumulate_no_grad(op, tensors, table)
    device = tensors[0].device if tensors else table.device
    _check(
        TypeError,
        table.dtype == torch.float32,
        lambda: f"{op}: table must be float32, got {table.dtype}",
    )
    _check(
        ValueError,
        table.dim() == 1 and table.is_contiguous(),
        lambda: f"{op}: table must be a contiguous 1-D tensor, got shape {_shape(table)}",
    )
    _check(
        RuntimeError,
        table.device == device,
        lambda: f"{op}: table is on {table.device} but the tensors are on {device}",
    )
    check_tensors(op, tensors, group_index, table.numel(), groups)


def check_segments(op, flat, offsets, group_of_segment, num_groups, values):
    """check_no_grad(flat), then plan_segments. `values`: (offsets, groups) as
    lists, or None to skip the checks that need them."""
    check_no_grad(op, "flat", flat)
    _check(ValueError, num_groups >= 0, lambda: f"{op}: num_groups must be >= 0, got {num_groups}")
    _check(
        TypeError,
        flat.dtype in _NORM_DTYPES,
        lambda: f"{op}: flat has dtype {flat.dtype}; supported are float32, float16 and bfloat16",
    )
    _check(
        ValueError,
        flat.dim() == 1 and flat.is_contiguous(),
        lambda: f"{op}: flat must be a contiguous 1-D tensor, got shape {_shape(flat)}",
    )
    s = group_of_segment.numel()
    check_index_tensor(op, "offsets", offsets, s + 1)
    check_index_tensor(op, "group_of_segment", group_of_segment, s)
    if values is None:
        return
    off, grp = values
    n = flat.numel()
    _check(
        IndexError,
        off[0] >= 0 and off[-1] <= n,
        lambda: (
            f"{op}: offsets must lie in [0, {n}], got offsets[0] = {off[0]}, "
            f"offsets[{s}] = {off[-1]}"
        ),
    )
    for i in range(s):
        _check(
            ValueError,
            off[i + 1] >= off[i],
            lambda i=i: (
                f"{op}: offsets must be non-decreasing, but offsets[{i + 1}] = "
                f"{off[i + 1]} < offsets[{i}] = {off[i]}"
            ),
        )
        _check(
            IndexError,
            0 <= grp[i] < num_groups,
            lambda i=i: (
                f"{op}: group_of_segment[{i}] = {grp[i]} is out of range for "
                f"num_groups = {num_groups}"
            ),
        )
