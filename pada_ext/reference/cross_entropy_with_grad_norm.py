"""Reference for cross_entropy_with_grad_norm: torch's loss plus the per-row
gradient norm computed elementwise, in float64 (slow, obviously right)."""

import torch
import torch.nn.functional as F


def grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """||softmax(z_i) - t_i||_2 per row, t_i the (smoothed) one-hot target; float32.

    0 for ignored rows; NaN for rows whose norm is not finite (NaN or +inf
    logits, all -inf), the documented policy of the kernels.
    """
    n, c = logits.shape
    z = logits.detach().to(torch.float64)
    keep = target != ignore_index
    safe = torch.where(keep, target, torch.zeros_like(target)).long()
    t = torch.full_like(z, label_smoothing / c)
    t[torch.arange(n, device=z.device), safe] += 1.0 - label_smoothing
    norm = torch.linalg.vector_norm(torch.softmax(z, dim=1) - t, dim=1)
    norm = torch.where(torch.isfinite(norm), norm, torch.full_like(norm, float("nan")))
    norm = torch.where(keep, norm, torch.zeros_like(norm))
    return norm.to(torch.float32)


def cross_entropy_with_grad_norm(
    logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0
):
    """(loss, grad_norm): torch's cross-entropy (differentiable) and the detached norm."""
    loss = F.cross_entropy(
        logits,
        target.long(),
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    return loss, grad_norm(logits, target, ignore_index, label_smoothing)
