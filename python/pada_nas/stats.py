"""Paired comparisons of two samplers over the seeds they share.

Seed s of every sampler starts from the same initial weights (and, where both use the
plain data order, the same batches), so the experiment compares samplers by the
per-seed difference of a metric, not by the difference of two means:

- mean paired difference d = mean over seeds of (metric(A, s) - metric(B, s));
- a 95% percentile bootstrap interval of d: seeds resampled with replacement
  (``resamples`` draws, a fixed seed, so the interval is reproducible);
- the two-sided Wilcoxon signed-rank p-value of the differences
  (``scipy.stats.wilcoxon``, exact for small samples without ties; zero
  differences dropped, as its default ``zero_method="wilcox"`` does).

A difference is called significant here when the interval excludes 0 and p < 0.05.
"""

import math

import numpy as np

ALPHA = 0.05


def paired_difference(a, b, resamples: int = 10_000, seed: int = 0) -> dict:
    """``{"mean", "ci_low", "ci_high", "p", "n", "significant"}`` of the differences a - b.

    `a` and `b` are one value per seed, in the same seed order. NaN pairs (a run
    that could not be scored) are left out and `n` counts the pairs kept.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and alike, got shapes {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    out = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "n": len(d)}
    if len(d) == 0:
        out["significant"] = False
        return out
    out["mean"] = float(d.mean())
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1)
    out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
    if np.any(d != 0):
        from scipy.stats import wilcoxon

        out["p"] = float(wilcoxon(d).pvalue)
    else:
        out["p"] = 1.0  # identical on every seed: no evidence of a difference
    out["significant"] = bool(out["p"] < ALPHA and (out["ci_low"] > 0 or out["ci_high"] < 0))
    return out
