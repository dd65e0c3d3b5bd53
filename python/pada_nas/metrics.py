"""Ranking metrics and the supernet's gradient variance.

Definitions used throughout (the README repeats them):

- Kendall's tau: ``scipy.stats.kendalltau(pred, truth)`` (tau-b, ties counted
  as scipy does), as in the authors' code.
- Precision@Top5%: with ``k = max(1, floor(0.05 * n))`` over n paths, the share
  of the k paths ranked best by the supernet that are also among the k best by
  ground truth: ``|top_k(pred) & top_k(truth)| / k``. Ties are broken by path
  order (a stable sort), so the result is deterministic.
- Gradient variance (GV) of an epoch: for every element of every candidate-op
  parameter (the convs on the cells' edges), the unbiased variance of its
  gradient over the steps of the epoch in which its op was on the path (the
  gradient that the optimizer applied: after clipping, before weight decay);
  GV is the mean of these variances over all elements that were trained at
  least twice in the epoch.
"""

import math

import numpy as np
import torch
from scipy import stats


def kendall_tau(pred, truth) -> float:
    return float(stats.kendalltau(np.asarray(pred), np.asarray(truth)).statistic)


def top_k_count(n: int, fraction: float = 0.05) -> int:
    return max(1, math.floor(fraction * n))


def precision_at_top(pred, truth, fraction: float = 0.05) -> float:
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    if pred.shape != truth.shape or pred.ndim != 1:
        raise ValueError("pred and truth must be 1-D and alike")
    k = top_k_count(len(pred), fraction)
    best_pred = np.argsort(-pred, kind="stable")[:k]
    best_truth = np.argsort(-truth, kind="stable")[:k]
    return len(set(best_pred.tolist()) & set(best_truth.tolist())) / k


class GradVariance:
    """Accumulates per-element gradient sums of the candidate ops' parameters.

    ``params[k][j]`` lists the parameters of op j on decision k over all cells
    (as ``PathSampler`` groups them); :meth:`add` is called once per step with
    the step's path, after clipping; :meth:`epoch_value` returns the epoch's GV
    and restarts the sums.
    """

    def __init__(self, params):
        self.params = params
        flat = {id(p): p for ps in params for plist in ps for p in plist}
        self._sum = {i: torch.zeros_like(p, dtype=torch.float64) for i, p in flat.items()}
        self._sq = {i: torch.zeros_like(p, dtype=torch.float64) for i, p in flat.items()}
        self._count = dict.fromkeys(flat, 0)

    def add(self, path) -> None:
        grads, sums, sqs = [], [], []
        for k, j in enumerate(path):
            for p in self.params[k][j]:
                if p.grad is None:
                    continue
                grads.append(p.grad.detach().to(torch.float64))
                sums.append(self._sum[id(p)])
                sqs.append(self._sq[id(p)])
                self._count[id(p)] += 1
        if grads:
            # foreach: one dispatch per list instead of per tensor.
            torch._foreach_add_(sums, grads)
            torch._foreach_addcmul_(sqs, grads, grads)

    def epoch_value(self) -> float:
        total, elements = None, 0  # summed on the device in the same order: one read
        for i, c in self._count.items():
            if c >= 2:
                mean = self._sum[i] / c
                var = (self._sq[i] - c * mean * mean).clamp_min(0.0) / (c - 1)
                total = var.sum() if total is None else total + var.sum()
                elements += var.numel()
        total = 0.0 if total is None else float(total)
        for i in self._count:
            self._sum[i].zero_()
            self._sq[i].zero_()
            self._count[i] = 0
        return total / elements if elements else float("nan")
