"""Reference for sample_with_replacement: inverse CDF in float64.

Exact to float64 rounding, O(N + M log N). Draws from its own generator seeded
by `seed`, so its output is a different (equally valid) sample than the kernels'.
"""

import torch


def sample_with_replacement(
    weights: torch.Tensor, num_samples: int, seed: torch.Tensor
) -> torch.Tensor:
    w = weights.to(torch.float64)
    bad = ~torch.isfinite(w) | (w < 0)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"sample_with_replacement: weights[{i}] = {float(w[i])} is not finite and >= 0"
        )
    cdf = torch.cumsum(w, 0)
    total = cdf[-1]
    if not float(total) > 0.0:
        raise ValueError("sample_with_replacement: all weights are zero")
    gen = torch.Generator(device=weights.device).manual_seed(int(seed.item()) & (2**63 - 1))
    u = torch.rand(num_samples, dtype=torch.float64, device=weights.device, generator=gen) * total
    # right=True: u lands past every zero-weight slot, which therefore never wins.
    idx = torch.searchsorted(cdf, u, right=True)
    return idx.clamp_(max=weights.numel() - 1)
