"""Argument normalisation shared by the public functions in pada_ext.ops:
Python-level types only (a list where a Tensor belongs, None entries, floats
for ints, int64 overflow), each error naming the argument. The tensor rules
are the ops' own (every backend's), not checked here; `check` is how those
rules raise, in every backend and in the fakes."""

import numbers

import torch

_INT64 = (-(2**63), 2**63)

_TORCH_CHECKS = {
    RuntimeError: torch._check,
    ValueError: torch._check_value,
    TypeError: torch._check_type,
    IndexError: torch._check_index,
}


def check(kind, cond, message):
    """Raises kind(message()) unless cond. A plain bool is tested here, so that
    torch.compile traces the check; a symbolic one (a fake kernel under dynamic
    shapes) goes to torch._check_*, which records it."""
    if isinstance(cond, bool):
        if not cond:
            raise kind(message())
    else:
        _TORCH_CHECKS[kind](cond, message)


def int_arg(op, name, value):
    """An int argument as the ops take it (int64); SymInts pass through."""
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if not _INT64[0] <= value < _INT64[1]:
        raise ValueError(f"{op}: {name} = {value} does not fit in int64")
    return int(value)


def tensor_arg(op, name, value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(value).__name__}")
    return value


def _as_list(op, value, expected):
    """list(value), or a TypeError that says what was `expected` and what came."""
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{op}: {expected}, got {type(value).__name__}") from None


def tensor_list(op, tensors):
    """`tensors` as a list of Tensors, naming the first entry that is not one."""
    if isinstance(tensors, torch.Tensor):
        raise TypeError(
            f"{op}: tensors must be a list or tuple of Tensors, got a Tensor (pass [t] for one)"
        )
    tensors = _as_list(op, tensors, "tensors must be a list or tuple of Tensors")
    for i, t in enumerate(tensors):
        if t is None:
            raise TypeError(
                f"{op}: tensors[{i}] is None (a parameter that got no gradient?); leave such "
                "entries out, with their group indices, e.g. "
                "[p.grad for p in params if p.grad is not None]"
            )
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: tensors[{i}] must be a Tensor, got {type(t).__name__}")
    return tensors


def index_arg(op, name, index):
    """An index argument as the CPU int64 tensor the kernels read on the host,
    and its values when given as a list (so that torch.compile need not read a
    tensor's data while tracing)."""
    if isinstance(index, torch.Tensor):
        if index.device.type != "cpu":
            index = index.cpu()  # a host sync; keep group indices on the CPU to avoid it
        return index, None
    values = _as_list(op, index, f"{name} must be a CPU int64 tensor or a list of ints")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, torch.SymInt)):
            # Floats would be truncated silently by torch.tensor(..., dtype=int64).
            raise TypeError(f"{op}: {name}[{i}] must be an int, got {v!r} ({type(v).__name__})")
        if isinstance(v, numbers.Integral) and not _INT64[0] <= v < _INT64[1]:
            raise ValueError(f"{op}: {name}[{i}] = {v} does not fit in int64")
    values = [v if isinstance(v, torch.SymInt) else int(v) for v in values]
    return torch.tensor(values, dtype=torch.int64), values


def bool_arg(op, name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a bool, got {value!r} ({type(value).__name__})")
    return value
