"""Command line: ``python -m pada_nas [--quick] [--samplers spos,da,pa,pada] ...``

Trains each sampler with each seed on the same budget, ranks the ground-truth
path sets with the inherited weights, and writes results.json, table.md,
kt.png, gv.png and entropy.png to --out.
"""

import argparse
import shlex
import sys

import torch

from . import experiment
from .config import PRESETS, SAMPLERS, make_config
from .evaluate import RANK_SCORES


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m pada_nas", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--quick", action="store_true", help="2 seeds, 15 epochs: a few minutes")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated subset")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per sampler")
    p.add_argument(
        "--rules",
        "--config",
        dest="rules",
        choices=("paper", "default"),
        default="paper",
        help="paper: ImportanceSampler.paper / PathSampler.paper; default: pada_ext defaults",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--channels", type=int)
    p.add_argument("--cells", type=int)
    p.add_argument("--train-size", type=int)
    p.add_argument("--eval-every", type=int, help="ranking metrics every k epochs")
    p.add_argument("--test-size", type=int, help="test images for the evaluation (default all)")
    p.add_argument("--lr", type=float, help="the supernet's SGD learning rate")
    p.add_argument(
        "--rank-by",
        choices=RANK_SCORES,
        help="rank paths by accuracy or by p_correct (mean probability of the true class)",
    )
    p.add_argument(
        "--ground-truth",
        help="ground-truth JSON (default: the preset's, python/ground_truth/digits*.json)",
    )
    p.add_argument("--out", default="python/runs/latest")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument(
        "--processes", type=int, default=1, help="supernets trained at a time (one per core)"
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to train and evaluate (default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--amp", choices=("bf16",), help="bfloat16 autocast of forward and loss (CPU or CUDA)"
    )
    p.add_argument("--data-root", default="./data", help="CIFAR-10 folder's parent")
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never download CIFAR-10: fail, naming the folder, when its files are missing",
    )
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        sys.exit(f"--device {args.device!r}: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no CUDA GPU is visible to torch")
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    for s in samplers:
        if s not in SAMPLERS:
            sys.exit(f"unknown sampler {s!r}: choose from {', '.join(SAMPLERS)}")
    if args.ground_truth is None:
        args.ground_truth = str(experiment.default_ground_truth(args.preset))
    try:
        _, gt = experiment.load_ground_truth(args.ground_truth)
    except FileNotFoundError:
        sys.exit(f"no ground truth at {args.ground_truth} (see --ground-truth)")
    # The supernet and split must be those the ground truth was trained with.
    overrides = experiment.config_from_ground_truth(gt) if args.preset != "authors" else {}
    for key in ("channels", "cells", "train_size"):
        given = getattr(args, key)
        if given is not None and key in overrides and given != overrides[key]:
            print(
                f"warning: --{key.replace('_', '-')} {given} differs from the ground truth's "
                f"{overrides[key]}",
                file=sys.stderr,
            )
        if given is not None:
            overrides[key] = given
    seeds = args.seeds
    if args.quick:
        seeds = min(seeds, 2)
        overrides.setdefault("epochs", 15)
        overrides.setdefault("eval_every", 5)
        print(
            "--quick: a smoke test of the whole pipeline (2 seeds, 15 epochs); the supernets are "
            "barely trained and its table cannot tell the samplers apart",
            file=sys.stderr,
        )
    for key in ("epochs", "batch_size", "eval_every", "test_size", "lr", "rank_by"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    overrides["device"], overrides["amp"] = str(device), args.amp
    cfg = make_config(args.preset, rules=args.rules, **overrides)
    command = "python -m pada_nas " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        payload = experiment.run(
            cfg,
            samplers,
            list(range(seeds)),
            args.ground_truth,
            args.out,
            command=command,
            progress=not args.no_progress,
            data_root=args.data_root,
            download=not args.no_download,
            processes=args.processes,
        )
    except FileNotFoundError as e:  # e.g. CIFAR-10 missing with --no-download
        sys.exit(str(e))
    print()
    print(payload["table"])
    print(
        f"\n{len(payload['runs'])} supernets in {payload['seconds']:.0f} s; wrote {args.out}/"
        "{results.json,table.md,kt.png,gv.png,entropy.png}"
    )


if __name__ == "__main__":
    main()
