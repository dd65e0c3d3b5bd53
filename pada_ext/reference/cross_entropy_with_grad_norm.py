"""Reference for cross_entropy_with_grad_norm: torch's loss plus the per-sample
gradient norm computed elementwise, in float64 (slow, obviously right).

Logits are [N, C] or [N, C, d1, ...] (one sample per position); targets class
indices [N, d1, ...] or probabilities shaped as the logits (soft targets)."""

import torch
import torch.nn.functional as F


def _out_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """||d l_i / d z_i||_2 per sample (class dim 1 reduced), l_i the unweighted
    loss of sample i: ||softmax(z_i) * sum(t_i) - t_i|| with t_i the target
    distribution (one-hot or soft, smoothed as torch smooths it). float32
    (float64 for float64 logits).

    0 for ignored samples; NaN for samples whose norm is not finite (NaN or
    +inf logits, all -inf), the documented policy of the kernels.
    """
    z = logits.detach().to(torch.float64)
    c = z.shape[1]
    p = torch.softmax(z, dim=1)
    if target.is_floating_point():  # probabilities; torch ignores ignore_index here
        t = target.detach().to(torch.float64) * (1.0 - label_smoothing) + label_smoothing / c
        keep = torch.ones(p.shape[:1] + p.shape[2:], dtype=torch.bool, device=z.device)
    else:
        keep = target != ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target)).long()
        t = F.one_hot(safe, c).movedim(-1, 1).to(torch.float64)
        t = t * (1.0 - label_smoothing) + label_smoothing / c
    norm = torch.linalg.vector_norm(p * t.sum(1, keepdim=True) - t, dim=1)
    norm = torch.where(torch.isfinite(norm), norm, torch.full_like(norm, float("nan")))
    norm = torch.where(keep, norm, torch.zeros_like(norm))
    return norm.to(_out_dtype(logits))


def cross_entropy_with_grad_norm(
    logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0, weight=None
):
    """(loss, grad_norm): torch's cross-entropy (differentiable) and the detached norm."""
    loss = torch_loss(logits, target, weight, reduction, ignore_index, label_smoothing)
    return loss, grad_norm(logits, target, ignore_index, label_smoothing)


def torch_loss(logits, target, weight, reduction, ignore_index, label_smoothing):
    """The loss the op defines: F.cross_entropy itself, on class indices of any integer
    dtype (widened to int64) or on soft targets. Also the loss of the composite path
    (pada_ext/_cross_entropy_composite.py), which is this loss and a float32 norm."""
    return F.cross_entropy(
        logits,
        target if target.is_floating_point() else target.long(),
        weight=weight,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
