"""Reference for path_record_: PathSampler.record's torch ops (the code that
the fused op replaced), with the norms in float64. The rule update is also
what PathSampler runs where the fused op does not apply (flat_grads, float64
gradients)."""

import math

import torch

from .. import _codes

_PAPER, _EMA = _codes.PATH_RULE["paper"], _codes.PATH_RULE["ema"]


def step_scores(grads, cell_index, weights, norm):
    """The step of every cell, float32 shaped like weights (None grads count as 0)."""
    cells = weights.numel()
    keep = [i for i, g in enumerate(grads) if g is not None]
    device = weights.device
    sq = torch.zeros(len(keep), dtype=torch.float64, device=device)
    if keep:
        sq = torch.stack(torch._foreach_norm([grads[i].double() for i in keep])).square()
    cell = cell_index[keep].to(device)
    w = weights.reshape(-1)
    if norm == _codes.PATH_NORM["l2"]:
        total = torch.zeros(cells, dtype=torch.float64, device=device).index_add_(0, cell, sq)
        step = (total.float() * w).sqrt()
    else:
        norms = sq.float().double().sqrt().float().double()  # each tensor's float32 norm
        total = torch.zeros(cells, dtype=torch.float64, device=device).index_add_(0, cell, norms)
        step = (total * w.double()).float()
        # the matrix product of the torch code: 0 * inf poisons every cell
        step = torch.where(norms.isfinite().all(), step, math.nan)
    return step.view(weights.shape)


def update_scores_(step, on_path, scores, visited, count, skipped, rule, decay):
    """Folds `step` (shaped like scores) into the tables in place by `rule`."""
    if rule == _PAPER:
        # The authors' test is step != 0; > 0 also keeps NaN out (norms are >= 0).
        finite = step < math.inf
        mask = (step > 0) & finite & on_path
        scores.copy_(torch.where(mask, (scores + step).mul_(0.5), scores))
        skipped.add_(on_path > finite)  # on the path and not finite
    else:
        mask = torch.isfinite(step) & on_path
        skipped.add_(on_path ^ mask)  # on the path and not finite
        if rule == _EMA:
            mixed = torch.where(visited, scores.lerp(step, 1 - decay), step)
            scores.copy_(torch.where(mask, mixed, scores))
        else:  # mean
            count.add_(mask)
            scores.copy_(torch.where(mask, scores + (step - scores) / count.clamp_min(1), scores))
    visited.logical_or_(mask)


def path_record_(
    grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay, grad_scale=None
):
    step = step_scores(grads, cell_index, weights, norm)
    if grad_scale is not None:
        step = step / grad_scale
    update_scores_(step, weights > 0, scores, visited, count, skipped, rule, decay)
