"""Reference for sample_with_replacement: inverse CDF in float64.

Exact to float64 rounding, O(N + M log N). Draws from its own generator seeded
by `seed`, so its output is a different (equally valid) sample than the kernels'.
Arguments and weights are checked by the compiled kernels' rules, with their messages.
"""

import torch

from .._sample_with_replacement_checks import check_args, check_status


def sample_with_replacement(
    weights: torch.Tensor, num_samples: int, seed: torch.Tensor
) -> torch.Tensor:
    check_args(weights, num_samples, seed)
    w = weights.to(torch.float64)
    bad = (~torch.isfinite(w) | (w < 0)).nonzero()
    first_bad = int(bad[0, 0]) if bad.numel() else w.numel()
    cdf = torch.cumsum(w, 0)
    total = cdf[-1]
    check_status(weights, first_bad, float(total))
    gen = torch.Generator(device=weights.device).manual_seed(int(seed.item()) & (2**63 - 1))
    u = torch.rand(num_samples, dtype=torch.float64, device=weights.device, generator=gen)
    # Normalised so that u < 1 = cdf[-1] (u * total can round up to total when the
    # total is subnormal); right=True lands past every zero-weight slot.
    idx = torch.searchsorted(cdf / total, u, right=True)
    return idx.clamp_(max=weights.numel() - 1)
