"""torch.distributed helpers shared by the samplers."""

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def replicas(num_replicas, rank):
    """(num_replicas, rank): as given, else from the process group, else (1, 0)."""
    if num_replicas is None:
        num_replicas = dist.get_world_size() if active() else 1
    if rank is None:
        rank = dist.get_rank() if active() else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")
    return num_replicas, rank


def shared_seed(seed):
    """A base seed every rank agrees on: the given one, else rank 0's draw from
    torch's default generator (so torch.manual_seed governs it)."""
    if seed is not None:
        return int(seed)
    drawn = torch.randint(0, 2**62, (1,), dtype=torch.int64)
    if active() and dist.get_world_size() > 1:
        dist.broadcast(drawn, src=0)
    return int(drawn)


def merge_visited_mean(scores: torch.Tensor, visited: torch.Tensor) -> None:
    """In place: every entry that some rank has a value for becomes the mean of
    the ranks' values for it; entries no rank visited are left as they are."""
    if not active() or dist.get_world_size() == 1:
        return
    count = visited.to(torch.float32)
    total = torch.where(visited, scores, torch.zeros_like(scores))
    dist.all_reduce(count)
    dist.all_reduce(total)
    seen = count > 0
    scores.copy_(torch.where(seen, total / count.clamp_min(1.0), scores))
    visited.copy_(seen)


def all_reduce_sum_(t: torch.Tensor) -> None:
    if active() and dist.get_world_size() > 1:
        dist.all_reduce(t)
