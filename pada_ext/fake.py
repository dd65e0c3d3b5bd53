"""Fake (meta) implementations of the compiled pada:: operators, so that
torch.compile and torch.export can trace through them without running them."""

import torch


@torch.library.register_fake("pada::sample_with_replacement")
def _sample_with_replacement_fake(weights, num_samples, seed):
    torch._check(weights.dim() == 1, lambda: "weights must be 1-D")
    torch._check(num_samples >= 0, lambda: "num_samples must be >= 0")
    return weights.new_empty((num_samples,), dtype=torch.int64)


@torch.library.register_fake("pada::importance_update_")
def _importance_update_fake(scores, visited, status, index, values, decay):
    torch._check(index.numel() == values.numel(), lambda: "one value per index")
    return None
