"""The exact ATen path of cross_entropy_with_grad_norm, for what the fused
kernels do not cover (class weights, soft targets, float64 logits): the loss is
F.cross_entropy itself (its autograd, autocast and gradcheck included), the
norm is computed from the detached logits in float32 (float64 for float64
logits), with the same definition as the kernels'."""

import torch

from .reference.cross_entropy_with_grad_norm import torch_loss


def grad_norm(logits, target, ignore_index, label_smoothing):
    """||d l_i / d z_i|| of each sample's unweighted loss l_i, over dim 1."""
    z = logits.detach()
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    c = z.shape[1]
    eps = float(label_smoothing)
    a = eps / c
    p = torch.softmax(z, 1, dtype=acc)
    keep = None
    if target.is_floating_point():
        # l_i = -sum_c t_c log p_c: the gradient is p * sum(t) - t (t need not sum to 1).
        t = target.detach().to(acc) * (1.0 - eps) + a
        norm = torch.linalg.vector_norm(p * t.sum(1, keepdim=True) - t, dim=1)
    else:
        keep = target != ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target)).long().unsqueeze(1)
        # As the kernels: the target class is left out so that a confident
        # sample keeps its relative accuracy (no 1 - p_y).
        p_off = p.scatter(1, safe, 0.0)
        q = p_off.sum(1)  # mass off the target
        off = p_off.square().sum(1) - 2.0 * a * q + (c - 1) * a * a  # sum_{c != y} (p_c - a)^2
        dy = eps - a - q  # p_y - (1 - eps + a)
        norm = (off + dy * dy).clamp_min(0.0).sqrt()  # rounding can leave -tiny; NaN stays
    norm = torch.where(torch.isfinite(norm), norm, torch.full_like(norm, float("nan")))
    if keep is not None:
        norm = torch.where(keep, norm, torch.zeros_like(norm))
    return norm


def cross_entropy_with_grad_norm(logits, target, weight, reduction, ignore_index, label_smoothing):
    loss = torch_loss(logits, target, weight, reduction, ignore_index, label_smoothing)
    return loss, grad_norm(logits, target, ignore_index, label_smoothing)
