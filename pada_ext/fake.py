"""Fake (meta) implementations of the compiled pada:: operators, so that
torch.compile and torch.export can trace through them without running them."""

import torch


@torch.library.register_fake("pada::sample_with_replacement")
def _sample_with_replacement_fake(weights, num_samples, seed):
    torch._check(weights.dim() == 1, lambda: "weights must be 1-D")
    torch._check(num_samples >= 0, lambda: "num_samples must be >= 0")
    return weights.new_empty((num_samples,), dtype=torch.int64)


@torch.library.register_fake("pada::cross_entropy_with_grad_norm_fwd")
def _xent_fwd_fake(logits, target, ignore_index, label_smoothing):
    torch._check(logits.dim() == 2, lambda: "logits must be 2-D")
    torch._check(target.shape == logits.shape[:1], lambda: "target must be [N]")
    n = logits.shape[0]
    return tuple(logits.new_empty((n,), dtype=torch.float32) for _ in range(3))


@torch.library.register_fake("pada::cross_entropy_with_grad_norm_bwd")
def _xent_bwd_fake(grad_loss_per_row, logits, target, lse, ignore_index, label_smoothing):
    torch._check(logits.dim() == 2, lambda: "logits must be 2-D")
    return logits.new_empty(logits.shape)  # contiguous, as the kernels write it
