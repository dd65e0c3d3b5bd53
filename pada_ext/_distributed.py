"""torch.distributed helpers shared by the samplers.

Collectives run on a device the process group supports: an NCCL group (what
GPU DDP jobs use) has no CPU backend, so CPU tables and seeds are moved to the
current CUDA device for the collective and back.
"""

import numbers
from typing import Optional

import torch
import torch.distributed as dist

_SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes seeds in [0, 2**64)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def _distributed() -> bool:
    return active() and dist.get_world_size() > 1


def replicas(num_replicas, rank):
    """(num_replicas, rank): as given, else from the process group, else (1, 0)."""
    for name, value in (("num_replicas", num_replicas), ("rank", rank)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if num_replicas is None:
        num_replicas = dist.get_world_size() if active() else 1
    if rank is None:
        rank = dist.get_rank() if active() else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")
    return int(num_replicas), int(rank)


def group_device_types(group=None) -> list:
    """The device types (``"cpu"``, ``"cuda"``, ...) the group's collectives accept."""
    backend = str(dist.get_backend(group)).lower()
    if ":" in backend:  # "cpu:gloo,cuda:nccl" or "cuda:gloo": explicit per device
        return [part.split(":")[0].strip() for part in backend.split(",")]
    capability = getattr(dist.Backend, "backend_capability", {}).get(backend)
    if capability:
        return list(capability)
    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    types = getattr(pg, "_device_types", None)  # private; for backends registered without
    if types:
        return [torch.device(t).type for t in types]
    return ["cpu"]


def collective_device(like: torch.device, group=None) -> torch.device:
    """Where a collective on a tensor now on `like` runs: `like` itself if the group
    supports its type, else the CPU, else the current device of a supported type."""
    like = torch.device(like)
    types = group_device_types(group)
    if like.type in types:
        return like
    if "cpu" in types:
        return torch.device("cpu")
    kind = types[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"the process group (backend {dist.get_backend(group)!r}) supports CUDA "
                "tensors only, but CUDA is not available in this process"
            )
        return torch.device("cuda", torch.cuda.current_device())
    module = getattr(torch, kind, None)  # e.g. torch.xpu
    if module is not None and hasattr(module, "current_device"):
        return torch.device(kind, module.current_device())
    return torch.device(kind)


def check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {seed!r}")
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return int(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's draw: ``seed + epoch``, wrapped into [0, 2**64)."""
    return (seed + epoch) % _SEED_LIMIT


def shared_seed(seed):
    """A base seed every rank agrees on: the given one, else rank 0's draw from
    torch's default generator (so torch.manual_seed governs it)."""
    if seed is not None:
        return check_seed(seed)
    drawn = torch.randint(0, 2**62, (1,), dtype=torch.int64)
    if _distributed():
        on = drawn.to(collective_device(drawn.device))
        dist.broadcast(on, src=0)
        drawn = on.cpu()
    return int(drawn)


def merge_visited_mean(
    scores: torch.Tensor, visited: torch.Tensor, flags: Optional[torch.Tensor] = None
) -> Optional[torch.Tensor]:
    """In place: every entry that some rank has a value for becomes the mean of
    the ranks' values for it; entries no rank visited are left as they are.

    `flags` (error counters, any shape) are summed over the ranks in the same
    collective, so that every rank sees every rank's errors and all reach the
    same decision; the sums are returned (float64, on the flags' device), or
    `flags` itself when not distributed. One all-reduce, in float64 (exact
    counts; the mean rounded once into the scores' dtype).
    """
    if not _distributed():
        return flags
    count = visited.flatten().to(torch.float64)
    total = torch.where(visited, scores, torch.zeros_like(scores)).flatten().to(torch.float64)
    parts = [count, total]
    if flags is not None:
        parts.append(flags.flatten().to(count.device, torch.float64))
    packed = torch.cat(parts)
    device = collective_device(packed.device)
    reduced = packed.to(device)
    dist.all_reduce(reduced)
    reduced = reduced.to(packed.device)
    n = count.numel()
    count, total = reduced[:n].view(visited.shape), reduced[n : 2 * n].view(scores.shape)
    seen = count > 0
    scores.copy_(torch.where(seen, total / count.clamp_min(1.0), scores.double()))
    visited.copy_(seen)
    if flags is None:
        return None
    return reduced[2 * n :].view(flags.shape).to(flags.device)
