"""Schedules of the smoothing parameters (tau for data, delta for paths).

A schedule maps an epoch (or step) to a value in [0, 1]: the weight of the
importance distribution against the uniform one.
"""

import numbers
from typing import Callable, Optional, Union

ScheduleSpec = Union[str, float, Callable[[int], float]]


def make_schedule(spec: ScheduleSpec, total: Optional[int], name: str) -> Callable[[int], float]:
    """Turns a schedule spec into a function of the epoch.

    Args:
        spec: ``"linear"`` (``t / total``, from 0 up to 1, as the PA&DA paper
            and code), ``"linear_decrease"`` (``1 - t / total``; Table 4 of the
            paper compares both), a constant in [0, 1], or a callable ``t -> value``.
        total: the number of epochs (or steps) of training; needed by the linear specs.
        name: the parameter's name, for error messages.
    """
    if isinstance(spec, str):
        if spec not in ("linear", "linear_decrease"):
            raise ValueError(
                f"{name}: unknown schedule {spec!r}; use 'linear', "
                "'linear_decrease', a number in [0, 1] or a callable"
            )
        if total is None or total <= 0:
            raise ValueError(f"{name}='{spec}' needs the number of training epochs (epochs=...)")
        if spec == "linear":
            return lambda t: _checked(min(max(t / total, 0.0), 1.0), name)
        return lambda t: _checked(1.0 - min(max(t / total, 0.0), 1.0), name)
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        value = _checked(float(spec), name)
        return lambda t: value
    if callable(spec):
        return lambda t: _checked(float(spec(t)), name)
    raise TypeError(f"{name}: a schedule is a string, a number or a callable, got {spec!r}")


def _checked(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value
