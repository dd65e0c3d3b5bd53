"""Worker functions for the multi-process (gloo) tests; importable by spawn."""

import os

import torch
import torch.distributed as dist


def importance_sampler_worker(rank, world, init_file, out_dir):
    _init(rank, world, init_file)
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
        _meet(out_dir, rank, world)
    finally:
        dist.destroy_process_group()
    _exit_now()


def _init(rank, world, init_file, backend="gloo"):
    import datetime

    # A short timeout: a rank left waiting in a collective fails the test instead of hanging it.
    dist.init_process_group(
        backend,
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=20),
    )


def _meet(out_dir, rank, world, name="teardown"):
    """Waits until every rank got here, through files: a group restricted to CUDA
    has no CPU barrier, and gloo can abort a process (SIGABRT, "terminate called
    without an active exception") whose peer destroys the group while its own
    threads still run."""
    import time

    open(os.path.join(out_dir, f"{name}.{rank}"), "w").close()
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(out_dir, f"{name}.{r}")) for r in range(world)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {rank}: the other ranks never reached {name!r}")
        time.sleep(0.01)


def _exit_now():
    """Ends a worker that finished its work: gloo's threads can still abort the
    interpreter's own shutdown (seen 1 run in 5 with a "cpu:gloo" group), which
    os._exit skips. Only reached on success, so errors still reach the test."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def agreed_error_worker(rank, world, init_file, out_dir, counter):
    """Rank 1 alone has a device-counted error (as the CUDA kernel counts it):
    set_epoch must raise on both ranks, after the shared all-reduce."""
    _init(rank, world, init_file)
    try:
        from pada_ext import ImportanceSampler

        sampler = ImportanceSampler(20, tau=1.0, rule="last", seed=1)
        sampler.set_epoch(0)
        sampler.update(torch.tensor([rank]), torch.tensor([1.0]))
        if rank == 1:
            getattr(sampler, counter).view(-1)[0] += 1
        try:
            sampler.set_epoch(1)
            outcome = "no error"
        except Exception as e:  # noqa: BLE001 - recorded for the test to judge
            outcome = f"{type(e).__name__}: {e}"
        # Both ranks still meet here: nobody is stuck in a collective.
        dist.barrier()
        torch.save({"outcome": outcome}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
    _exit_now()


def collective_device_worker(rank, world, init_file, out_dir, backend):
    """Which device the samplers' collectives pick for CPU tables on a group of
    `backend`; on a GPU also runs both samplers' collectives on it."""
    _init(rank, world, init_file, backend)
    try:
        from pada_ext import ImportanceSampler, _distributed

        result = {"types": _distributed.group_device_types()}
        try:
            result["picked"] = str(_distributed.collective_device(torch.device("cpu")))
        except RuntimeError as e:  # a CUDA-only group in a process without CUDA
            result["picked"] = f"RuntimeError: {e}"
        try:
            result["seed"] = ImportanceSampler(8, tau=1.0, seed=None).seed  # broadcasts
        except RuntimeError as e:
            result["seed"] = f"RuntimeError: {e}"
        if torch.cuda.is_available():
            torch.cuda.set_device(0)
            for device in (None, "cuda"):  # tables on the CPU until the first update, or on CUDA
                s = ImportanceSampler(8, tau=1.0, rule="last", seed=None, device=device)
                s.set_epoch(0)
                values = torch.tensor([1.0 + rank, 2.0 + rank], device=device or "cpu")
                s.update(torch.tensor([rank, 4]), values)
                s.set_epoch(1)
                result[f"seed_{device}"] = s.seed
                result[f"epoch_scores_{device}"] = s.epoch_scores.cpu()
            from torch import nn

            from pada_ext import PathSampler

            torch.manual_seed(rank)  # different weights: the seed must still agree
            edges = [nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])]
            paths = PathSampler(edges, delta=1.0, rule="mean", update="step", seed=None)
            paths.set_epoch(0)
            path = paths.sample()
            edges[0][path[0]](torch.ones(1, 2)).sum().backward()
            paths.record(path)  # update="step": merges at every record
            paths.set_epoch(1)
            result["path_seed"] = paths.seed
            result["path_probs"] = paths.probabilities
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        _meet(out_dir, rank, world)
    finally:
        dist.destroy_process_group()
    _exit_now()


def path_sampler_worker(rank, world, init_file, out_dir):
    """PathSampler on two ranks with different data: one seed, one path per step,
    scores merged before the update."""
    _init(rank, world, init_file)
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
        _meet(out_dir, rank, world)
    finally:
        dist.destroy_process_group()
    _exit_now()
