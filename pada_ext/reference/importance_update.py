"""Reference for importance_update_: the visit rule as a plain Python loop."""

import math

import torch

from .. import _codes


def importance_update_(scores, visited, status, index, values, decay):
    size = scores.numel()
    idx = index.tolist()
    for i, k in enumerate(idx):
        if not 0 <= k < size:
            raise IndexError(
                f"importance_update_: index[{i}] = {k} is out of range "
                f"for a table of {size} entries"
            )
    for k, v in zip(idx, values.double().tolist()):
        if not math.isfinite(v):
            status[_codes.STATUS_NONFINITE] += 1
            continue
        if bool(visited[k]):
            s = float(scores[k])
            v = decay * s + (1.0 - decay) * v
        scores[k] = torch.tensor(v, dtype=torch.float64).float()
        visited[k] = True
