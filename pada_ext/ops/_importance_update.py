"""pada_ext.ops.importance_update_: argument rules, value screening, backend choice, docs.

Kernels: csrc/cpu|cuda/importance_update.*, pada_ext/triton/importance_update.py;
reference: pada_ext/reference/importance_update.py.
"""

import numbers

import torch

from .. import _codes, _dispatch, _triton_kernels
from ..reference import importance_update as _iu_reference

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
    if status.numel() != _codes.STATUS_SIZE or status.dtype != torch.int64:
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


def negative_values(values: torch.Tensor, table_dtype: torch.dtype) -> torch.Tensor:
    """Where `values` are finite in the table's dtype and negative (no host sync)."""
    stored = values.to(table_dtype)
    return (stored < 0) & stored.isfinite()


def _screen_importance_values(scores, index, values):
    """(index, values) with the values the table cannot take dealt with, no host sync:
    a value that overflows float32 becomes NaN (skipped and counted in status[1]
    like any non-finite value); a negative one raises on CPU, naming it, and on
    other devices gets index -1, which the kernel skips and counts in status[0]."""
    if values.dtype.itemsize > scores.dtype.itemsize:  # float64: finite, yet inf as float32
        values = torch.where(values.to(scores.dtype).isfinite(), values, float("nan"))
    negative = negative_values(values, scores.dtype)
    if values.device.type == "cpu":
        if _dispatch.compiling():  # no data-dependent branch in a graph: an assert op instead
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
    if backend == "native" and values.device.type == "cpu" and not _dispatch.compiling():
        # The CPU kernel screens the values itself, in the pass that checks the indices.
        torch.ops.pada.importance_update_(scores, visited, status, index, values, float(decay))
        return
    index, values = _screen_importance_values(scores, index, values)
    if backend == "reference":
        _iu_reference.importance_update_(scores, visited, status, index, values, decay)
    elif backend == "triton":
        _triton_kernels.call(
            "importance_update_", scores.device, scores, visited, status, index, values,
            float(decay),
        )  # fmt: skip
    else:
        torch.ops.pada.importance_update_(scores, visited, status, index, values, float(decay))
