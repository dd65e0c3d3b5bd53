"""Worker of the two-process (gloo) PathSampler test; importable by spawn."""

import os

import torch
import torch.distributed as dist


def path_sampler_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from pada_nas.nb201 import Supernet

        from pada_ext import PathSampler

        torch.manual_seed(100 + rank)  # different data on each rank
        model = Supernet(channels=4, cells=1, num_classes=3)
        sampler = PathSampler(model.decisions(), delta=1.0, rule="mean", seed=None)
        sampler.set_epoch(0)
        paths = []
        for _ in range(4):
            path = sampler.sample()
            paths.append(path)
            model.zero_grad()
            model(torch.randn(4, 3, 8, 8), path).square().mean().backward()
            sampler.record(path)
        local = sampler.scores.clone()
        sampler.set_epoch(1)
        torch.save(
            {"paths": paths, "local": local, "probs": sampler.probabilities, "seed": sampler.seed},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
        # Both ranks done before teardown: gloo can abort a process whose peer
        # destroys the group while its own threads still run.
        dist.barrier()
    finally:
        dist.destroy_process_group()
