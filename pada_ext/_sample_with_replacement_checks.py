"""Argument and weight rules of sample_with_replacement, as the compiled
kernels state them (csrc/common/checks.h): the Triton kernel, the reference
and the fake kernels run these, so every backend raises the same exception
with the same message. Change a rule here and in checks.h together
(tests/test_sample_with_replacement_args.py compares the backends).
"""

import math

import torch

from ._args import check as _check

_OP = "sample_with_replacement"


def check_args(weights, num_samples, seed):
    """check_sample_with_replacement_args (the fakes run it too)."""
    _check(
        ValueError,
        weights.dim() == 1,
        lambda: f"{_OP}: weights must be 1-D, got shape {list(weights.shape)}",
    )
    _check(ValueError, weights.numel() > 0, lambda: f"{_OP}: weights is empty")
    _check(
        TypeError,
        weights.dtype in (torch.float32, torch.float64),
        lambda: f"{_OP}: weights must be float32 or float64, got {weights.dtype}",
    )
    _check(
        ValueError, num_samples >= 0, lambda: f"{_OP}: num_samples must be >= 0, got {num_samples}"
    )
    _check(
        ValueError,
        seed.numel() == 1 and seed.dtype == torch.int64,
        lambda: f"{_OP}: seed must be a one-element int64 tensor",
    )
    _check(
        RuntimeError,
        seed.device == weights.device,
        lambda: f"{_OP}: seed must be on the weights' device ({weights.device}), got {seed.device}",
    )


def _format_double(v: float) -> str:
    # As C++ streams print a double (what the compiled kernels' message shows).
    if math.isnan(v):
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    return f"{v:g}"


def check_status(weights, first_bad: int, total: float):
    """check_sample_with_replacement_status: `first_bad` is the first index
    whose weight is negative or not finite (numel if none), `total` their sum."""
    if first_bad < weights.numel():
        v = float(weights[first_bad])
        what = "NaN" if math.isnan(v) else ("infinite" if math.isinf(v) else "negative")
        raise ValueError(
            f"{_OP}: weights[{first_bad}] is {what} ({_format_double(v)}); "
            "weights must be finite and >= 0"
        )
    if not total > 0.0:
        raise ValueError(f"{_OP}: all weights are zero")
    if not math.isfinite(total):
        raise ValueError(
            f"{_OP}: the sum of the weights overflows float64; divide them by their maximum first"
        )
