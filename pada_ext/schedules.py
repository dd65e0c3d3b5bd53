"""Schedules of the smoothing parameters (tau for data, delta for paths).

A schedule maps an epoch (or step) to a value in [0, 1]: the weight of the
importance distribution against the uniform one. Epochs are 0-based: with
``total`` epochs, the valid ones are ``0 .. total - 1``; any other raises
(a 1-based loop would otherwise reach ``t = total``, where "linear" gives 1
and the draw ignores every item the last epoch did not score).
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
        total: the number of epochs (or steps) of training; needed by the linear
            specs. When given, the schedule rejects ``t`` outside ``[0, total)``.
        name: the parameter's name, for error messages.
    """
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, numbers.Integral) or total <= 0
    ):
        raise ValueError(f"{name}: the number of epochs must be a positive int, got {total!r}")
    if isinstance(spec, str):
        if spec not in ("linear", "linear_decrease"):
            raise ValueError(
                f"{name}: unknown schedule {spec!r}; use 'linear', "
                "'linear_decrease', a number in [0, 1] or a callable"
            )
        if total is None:
            raise ValueError(f"{name}='{spec}' needs the number of training epochs (epochs=...)")
        if spec == "linear":
            return _ranged(lambda t: t / total, total, name)
        return _ranged(lambda t: 1.0 - t / total, total, name)
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        value = _checked(float(spec), name)
        return _ranged(lambda t: value, total, name)
    if callable(spec):
        return _ranged(lambda t: float(spec(t)), total, name)
    raise TypeError(f"{name}: a schedule is a string, a number or a callable, got {spec!r}")


def paper_lag(epochs: int) -> Callable[[int], float]:
    """The PA&DA code's timing of tau and delta: the value for epoch e is
    (e - 1) / epochs, built at the end of epoch e - 1, so epochs 0 and 1 are uniform."""
    return lambda e: max(e - 1, 0) / epochs


def score_rule(rules: dict, rule: str, decay: Optional[float], name: str) -> tuple:
    """(decay, restart_every_epoch) of `rule` in a sampler's `rules` table
    ({rule: (default decay, restart every epoch)}). Only "ema" takes a decay,
    in (0, 1); the other rules have theirs fixed."""
    if rule not in rules:
        raise ValueError(f"{name}: rule must be one of {sorted(rules)}, got {rule!r}")
    default_decay, restart = rules[rule]
    if decay is not None and rule != "ema":
        raise ValueError(f"{name}: decay applies to rule='ema' only (rule={rule!r})")
    if decay is None:
        return default_decay, restart
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 < decay < 1.0:
        raise ValueError(f"{name}: decay must be in (0, 1), got {decay!r}")
    return float(decay), restart


def check_epoch(t, total: Optional[int], name: str) -> int:
    """`t` as an int, if it is an epoch of a run of `total` epochs (any t >= 0 when None)."""
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{name}: the epoch must be an int, got {t!r}")
    if t < 0 or (total is not None and t >= total):
        valid = ">= 0" if total is None else f"0 .. {total - 1} (epochs={total})"
        raise ValueError(f"{name}: epoch {t} is out of range; epochs count from 0: {valid}")
    return int(t)


def _ranged(f: Callable[[int], float], total: Optional[int], name: str) -> Callable[[int], float]:
    return lambda t: _checked(f(check_epoch(t, total, name)), name)


def _checked(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value
