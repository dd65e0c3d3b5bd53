"""Pilot: does averaging the weights over the end of training make the seeds agree more?

Trains sub64 paths with ``pada_nas.standalone.train`` (train_path's training), reading the
weights after each step, and evaluates the final weights and several averages of them: a
uniform average of the weights after each step of the last half or quarter of the steps, and
an exponential moving average from the initial weights. The "final" numbers equal the ground
truth file's for the same config.

    PYTHONPATH=python python python/ground_truth/pilots_distorted/pilot_avg.py --out X.json \
        --paths 16 [--epochs 2 --batch-size 128 --lr 0.05]
"""

import argparse
import json
import multiprocessing
import random
import sys

import torch
from pada_nas.data import digits_distorted
from pada_nas.evaluate import path_scores
from pada_nas.ground_truth import set_statistics
from pada_nas.nb201 import all_paths
from pada_nas.standalone import build, standalone_config, train

VARIANTS = ("final", "avg50", "avg25", "ema99")


def train_variants(path, split, cfg, seed):
    sums = {"avg50": None, "avg25": None}
    counts = {"avg50": 0, "avg25": 0}
    # the EMA starts from the initial weights (build seeds itself: train's are the same)
    ema = [p.detach().clone() for p in build(path, split, cfg, seed).parameters()]

    def after_step(model, step, total):
        with torch.no_grad():
            params = list(model.parameters())
            for e, p in zip(ema, params):
                e.mul_(0.99).add_(p, alpha=0.01)
            for name, frac in (("avg50", 0.5), ("avg25", 0.25)):
                if step > total * (1 - frac):
                    if sums[name] is None:
                        sums[name] = [p.detach().clone() for p in params]
                    else:
                        for s, p in zip(sums[name], params):
                            s.add_(p)
                    counts[name] += 1

    model = train(path, split, cfg, seed, after_step)
    weights = {
        "final": [p.detach().clone() for p in model.parameters()],
        "avg50": [s / counts["avg50"] for s in sums["avg50"]],
        "avg25": [s / counts["avg25"] for s in sums["avg25"]],
        "ema99": ema,
    }
    out = {}
    for name in VARIANTS:
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights[name]):
                p.copy_(w)
        s = path_scores(model, [path], split.x_test, split.y_test, cfg.eval_batch, ragged_tail=True)
        out[name] = s["accuracy"][0]
    return out


_W = {}


def _init(cfg):
    torch.set_num_threads(1)
    _W.update(split=digits_distorted(14_000, 12_000, 0.5, split_seed=0), cfg=cfg)


def _job(path, seeds):
    return [train_variants(path, _W["split"], _W["cfg"], s) for s in seeds]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--processes", type=int, default=2)
    args = p.parse_args()
    cfg = standalone_config(
        channels=8, cells=1, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr
    )
    sub64 = all_paths([2, 3])
    keep = sorted(random.Random(0).sample(range(64), args.paths))
    paths = [sub64[i] for i in keep]
    seeds = [0, 1, 2]
    ctx = multiprocessing.get_context("spawn")
    doc = {"command": " ".join(sys.argv), "seeds": seeds, "variants": {v: [] for v in VARIANTS}}
    with ctx.Pool(args.processes, _init, (cfg,)) as pool:
        jobs = [pool.apply_async(_job, (pth, seeds)) for pth in paths]
        for pth, job in zip(paths, jobs):
            res = job.get()
            for v in VARIANTS:
                doc["variants"][v].append(
                    {"path": pth, "set": "sub64", "test_acc": [r[v] for r in res]}
                )
            print(pth, {v: [round(r[v], 4) for r in res] for v in VARIANTS}, flush=True)
    doc["statistics"] = {v: set_statistics(doc["variants"][v], "sub64") for v in VARIANTS}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    for v in VARIANTS:
        st = doc["statistics"][v]
        print(
            f"{v}: seed KT {st['seed_kt']:.3f} spread {st['spread_std']:.4f} "
            f"seed std {st['seed_std']:.4f} ratio {st['spread_std'] / st['seed_std']:.2f}"
        )


if __name__ == "__main__":
    main()
