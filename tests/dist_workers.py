"""Worker functions for the multi-process (gloo) tests; importable by spawn."""

import os

import torch
import torch.distributed as dist


def importance_sampler_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from pada_ext import ImportanceSampler

        sampler = ImportanceSampler(40, num_samples=1001, tau=1.0, rule="last", seed=None)
        sampler.set_epoch(0)
        # Rank 0 scores items 0-9, rank 1 items 10-19; both score item 20.
        own = torch.arange(10) + 10 * rank
        sampler.update(own, torch.full((10,), float(rank + 1)))
        sampler.update(torch.tensor([20]), torch.tensor([float(rank + 1)]))
        sampler.set_epoch(1)
        torch.save(
            {
                "seed": sampler.seed,
                "epoch_scores": sampler.epoch_scores,
                "draw": sampler.epoch_indices(),
                "shard": torch.tensor(list(sampler)),
                "len": len(sampler),
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()
