"""pada_ext.ops.path_record_: argument rules, backend choice, docs.

Kernels: csrc/cpu|cuda/path_record.*, pada_ext/triton/path_record.py;
reference: pada_ext/reference/path_record.py; shared rules: path_record_check_args
in pada_ext/fake.py.
"""

import numbers

import torch

from .. import _args, _codes, _dispatch, _triton_kernels
from .. import fake as _fake
from ..reference import path_record as _pr_reference

_OP = "path_record_"


def _code(name, value, codes):
    if value not in codes:
        raise ValueError(f"{_OP}: {name} must be one of {tuple(codes)}, got {value!r}")
    return codes[value]


def path_record_(
    grads,
    cell_index,
    weights,
    scores,
    visited,
    count,
    skipped,
    *,
    norm="l2",
    rule="ema",
    decay=0.9,
    grad_scale=None,
    backend=None,
) -> None:
    """One step of path importance sampling: the step score of every cell of
    the score tables from the gradients of a path's ops, folded into the
    tables in place (what :meth:`pada_ext.PathSampler.record` runs; one kernel
    on CPU, no host sync).

    The tables are shaped alike ([rows, K] in PathSampler): a cell is (row, op).

    * step, ``norm="l2"``: ``sqrt(weight * sum of squares of the cell's gradients)``;
      ``norm="paper"``: ``weight * sum of the L2 norms of the cell's gradients``
      (NaN in every cell if any gradient's norm is not finite: an overflowed
      step is skipped for every op on the path); then divided by ``grad_scale``
      where given (the GradScaler's scale, for gradients that are still scaled).
    * ``rule="paper"``: ``s <- (s + step) / 2`` where ``0 < step < inf``;
      ``"ema"``: a first step is stored, later ones ``s <- lerp(s, step, 1 - decay)``;
      ``"mean"``: ``count += 1``, ``s <- s + (step - s) / count``; ema and mean
      take finite steps only.
    * ``visited`` marks the cells a step went into; a non-finite step of a cell
      on the path is left out and counted in ``skipped``.
    * Cells whose weight is 0 are off the path and left alone.

    Args:
        grads: list of gradients (float32, float16 or bfloat16, on the tables'
            device), None for a missing one (it counts as zeros).
        cell_index: the cell (flat index into the tables) of each gradient: a
            CPU int64 tensor or a list of ints.
        weights: float32, shaped like scores: 1 / the number of decisions that
            chose the cell's op (shared rows; 1 otherwise) on the path, 0 off it.
        scores, visited, count, skipped: the tables (float32, bool, float32,
            int64, contiguous, shaped alike), updated in place.
        norm: ``"l2"`` or ``"paper"``. rule: ``"paper"``, ``"ema"`` or ``"mean"``.
        decay: ema's decay, in [0, 1].
        grad_scale: a one-element float32 tensor on the tables' device, or None.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Every backend checks the arguments by the same rules, with the same messages.

    Raises:
        TypeError: dtypes (naming the argument or the gradient's position).
        ValueError: shapes, norm, rule or decay out of range.
        IndexError: a cell index out of range (naming its position).
        RuntimeError: tensors on another device than the tables.
    """
    if isinstance(grads, torch.Tensor):
        raise TypeError(f"{_OP}: grads must be a list of Tensors (or None), got a Tensor")
    grads = list(grads)
    for i, g in enumerate(grads):
        if g is not None and not isinstance(g, torch.Tensor):
            raise TypeError(f"{_OP}: grads[{i}] must be a Tensor or None, got {type(g).__name__}")
    if not isinstance(cell_index, torch.Tensor):
        cell_index = torch.tensor(
            [_args.int_arg(_OP, "cell_index", c) for c in cell_index], dtype=torch.int64
        )
    for name, t in (
        ("weights", weights),
        ("scores", scores),
        ("visited", visited),
        ("count", count),
        ("skipped", skipped),
    ):
        _args.tensor_arg(_OP, name, t)
    if grad_scale is not None:
        _args.tensor_arg(_OP, "grad_scale", grad_scale)
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real):
        raise TypeError(f"{_OP}: decay must be a float, got {decay!r}")
    norm = _code("norm", norm, _codes.PATH_NORM)
    rule = _code("rule", rule, _codes.PATH_RULE)
    args = (grads, cell_index, weights, scores, visited, count, skipped, norm, rule, float(decay))
    backend = _dispatch.resolve_backend(_OP, backend, scores.device)
    if backend == "native":
        torch.ops.pada.path_record_(*args, grad_scale)
        return
    _fake.path_record_check_args(*args, grad_scale)
    _fake.path_record_check_cells(cell_index, scores.numel())
    if backend == "reference":
        _pr_reference.path_record_(*args, grad_scale)
    else:
        _triton_kernels.call(_OP, scores.device, *args, grad_scale)
