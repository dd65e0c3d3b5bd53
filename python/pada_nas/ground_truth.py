"""Ground truth by standalone training: every path of {nor_conv_1x1, nor_conv_3x3}^6 (the 64-path
subspace of the PA&DA paper's Figure 1 and of Deeper Insights) and a fixed random sample of the
full 5^6 space, each trained from scratch with several seeds on the embedded digits.

    PYTHONPATH=python python -m pada_nas.ground_truth --out python/ground_truth/digits.json

The output is rewritten after every path, so an interrupted run started again with the same
arguments skips what is done. The random sample is drawn with ``random.Random(sample_seed)``
without replacement from the 15,625 path indices (lexicographic order of ``all_paths()``) and
excludes nothing: paths with ``none`` edges that disconnect the cell are real NAS-Bench-201 paths.
The seed-vs-seed Kendall tau is the mean over seed pairs of ``scipy.stats.kendalltau`` (tau-b)
between the seeds' accuracies across the paths of a set: the ceiling for any supernet's ranking.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shlex
import sys
import time

import torch

from .data import digits, digits_distorted
from .nb201 import all_paths
from .standalone import standalone_config, train_path

CONFIG_KEYS = (
    "train_size",
    "split_seed",
    "channels",
    "cells",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "sample_seed",
)
# Keys of the digits_distorted task, kept only in files made with it (older digits files lack them).
DISTORTED_KEYS = ("dataset", "test_images", "sigma")
# How the arithmetic is done (bf16 autocast, channels_last), kept only in files that changed it
# from fp32 NCHW, so that older files still match the config their command gives.
NUMERICS_KEYS = ("amp", "channels_last")


def random_paths(n: int, sample_seed: int) -> list[list[int]]:
    space = all_paths()
    return [space[i] for i in random.Random(sample_seed).sample(range(len(space)), n)]


def seed_kendall_tau(results, set_name: str):
    from scipy.stats import kendalltau

    accs = [r["test_acc"] for r in results if r["set"] == set_name]
    if len(accs) < 2:
        return None
    taus = []
    for i, j in itertools.combinations(range(len(accs[0])), 2):
        tau = kendalltau([a[i] for a in accs], [a[j] for a in accs]).statistic
        taus.append(float(tau))
    return sum(taus) / len(taus) if taus else None


def set_statistics(results, set_name: str):
    """What says whether a set's ranking is worth having: its seed-vs-seed KT, the
    spread of the paths' mean accuracies, the mean seed std within a path, and the
    share of path pairs whose means differ by less than that std (saturation: most)."""
    import numpy as np

    accs = np.array([r["test_acc"] for r in results if r["set"] == set_name], dtype=float)
    if len(accs) < 2:
        return None
    means = accs.mean(1)
    seed_std = float(accs.std(1, ddof=1).mean()) if accs.shape[1] > 1 else float("nan")
    i, j = np.triu_indices(len(means), 1)
    return {
        "paths": len(means),
        "seed_kt": seed_kendall_tau(results, set_name),
        "acc_min": float(means.min()),
        "acc_median": float(np.median(means)),
        "acc_max": float(means.max()),
        "spread_std": float(means.std(ddof=1)),
        "seed_std": seed_std,
        "pairs_within_seed_std": float(np.mean(np.abs(means[i] - means[j]) < seed_std)),
    }


def write(path: str, doc: dict) -> None:
    # Atomic replace: an interrupted write never leaves a truncated file to resume from.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def parse_args(argv=None):
    # Defaults are the committed run's config (python/ground_truth/README.md says why).
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-random", type=int, default=100)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--dataset", choices=("digits", "digits_distorted"), default="digits")
    p.add_argument("--train-size", type=int, default=500)
    p.add_argument(
        "--test-images", type=int, default=12_000, help="digits_distorted: test split size"
    )
    p.add_argument("--sigma", type=float, default=0.5, help="digits_distorted only")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--amp", choices=("bf16",), default=None, help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true", help="the model in channels_last")
    p.add_argument(
        "--pilot",
        type=int,
        default=0,
        help="a quick look: N sub64 paths (a fixed random subset) and the first N random ones",
    )
    p.add_argument("--sets", nargs="+", choices=("sub64", "random"), default=["sub64", "random"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--processes", type=int, default=1, help="paths trained in parallel, each on --threads"
    )
    return p.parse_args(argv)


def make_config(args) -> dict:
    keys = CONFIG_KEYS + (DISTORTED_KEYS if args.dataset != "digits" else ())
    keys += NUMERICS_KEYS if (args.amp or args.channels_last) else ()
    return {k: getattr(args, k) for k in keys}


def load_data(config: dict):
    """The split a ground-truth config names (files without "dataset" are digits)."""
    if config.get("dataset", "digits") == "digits":
        return digits(config["train_size"], config["split_seed"])
    return digits_distorted(
        config["train_size"],
        config["test_images"],
        config["sigma"],
        split_seed=config["split_seed"],
    )


_WORKER = {}


def _init_worker(config: dict, cfg, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(split=load_data(config), cfg=cfg)


def _train_seeds(path, seeds) -> list:
    return [train_path(path, _WORKER["split"], _WORKER["cfg"], s) for s in seeds]


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    config = make_config(args)
    cfg = standalone_config(
        channels=args.channels,
        cells=args.cells,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    # The file keeps a fixed key set; the remaining fields read (gradient clipping at 5,
    # evaluation batches of 256) are the defaults and are documented in the README.

    sub64 = all_paths([2, 3])
    rand = random_paths(args.num_random, args.sample_seed)
    if args.pilot:
        keep = sorted(random.Random(0).sample(range(len(sub64)), min(args.pilot, len(sub64))))
        sub64 = [sub64[i] for i in keep]
        rand = rand[: args.pilot]
    todo = [("sub64", p) for p in sub64] * ("sub64" in args.sets)
    todo += [("random", p) for p in rand] * ("random" in args.sets)

    argv_used = sys.argv[1:] if argv is None else list(argv)
    doc = {
        "dataset": args.dataset,
        "command": "PYTHONPATH=python python -m pada_nas.ground_truth " + shlex.join(argv_used),
        "seeds": list(args.seeds),
        "config": config,
        "results": [],
        "seed_kendall_tau": {"sub64": None, "random": None},
    }
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        if old["config"] != config or old["seeds"] != doc["seeds"]:
            sys.exit(f"{args.out} was made with another config or seeds; use another --out")
        doc["results"] = old["results"]
    done = {(r["set"], tuple(r["path"])) for r in doc["results"]}

    todo = [(s, p) for s, p in todo if (s, tuple(p)) not in done]
    bar = tqdm(total=len(todo), desc="paths", unit="path")
    t0 = time.perf_counter()
    # Each worker trains whole paths on its own thread(s); results are written in the order of
    # `todo`, so a file is the same whatever the number of processes.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.processes, _init_worker, (config, cfg, args.threads)) as pool:
        jobs = [pool.apply_async(_train_seeds, (path, args.seeds)) for _, path in todo]
        for (set_name, path), job in zip(todo, jobs):
            accs = job.get()
            doc["results"].append({"path": path, "set": set_name, "test_acc": accs})
            for name in ("sub64", "random"):
                doc["seed_kendall_tau"][name] = seed_kendall_tau(doc["results"], name)
            write(args.out, doc)
            bar.update()
            bar.set_postfix(acc=f"{sum(accs) / len(accs):.3f}")
    train_seconds = time.perf_counter() - t0
    bar.close()
    for name in ("sub64", "random"):
        stats = set_statistics(doc["results"], name)
        if stats:
            print(
                f"{name}: {stats['paths']} paths, mean acc {stats['acc_min']:.4f}.."
                f"{stats['acc_max']:.4f}, seed KT {stats['seed_kt']:.3f}, seed std "
                f"{stats['seed_std']:.4f}, pairs within one seed std "
                f"{stats['pairs_within_seed_std']:.2f}"
            )
    print(f"wall time of this invocation {train_seconds:.0f} s ({args.processes} processes)")


if __name__ == "__main__":
    main()
