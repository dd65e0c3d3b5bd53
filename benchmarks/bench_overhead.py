"""Time per training step of PA&DA against SPOS on the same supernet, batch and data.

Three variants train their own copy of the same supernet (same initial
weights), one epoch at a time, interleaved round robin so that load from other
processes on a shared machine hits them alike:

- spos: uniform paths, a RandomSampler-style permutation, F.cross_entropy.
- pada_fused: pada_ext as a user would use it: PathSampler.paper (sample,
  record after clip and step), ImportanceSampler.paper (the fused
  cross_entropy credits scores, no host sync) and their set_epoch / draw at the
  epoch's end.
- pada_unfused: the authors' way, rewritten from their training script:
  per step an .item() norm of each conv weight's and bias's gradient on the
  path in every cell, softmax/one_hot/subtract/norm then .cpu().numpy() of the
  data scores, a path drawn with np.random.choice; at the epoch's end a Python
  loop over the epoch's (index, score) pairs and np.random.choice(N, N, p=q).

Every variant runs the SAME path sequence through the network (the samplers
still draw and score as they would; only the path fed to the network is
shared), so that differences in the ops trained do not drown the overhead:
PA shifts the mix of ops, which changes compute but is not sampling overhead.
An epoch's time includes its epoch-end work; per-step time = epoch time / steps.

Shapes (the input each one feeds the supernet is printed with the table):
- small: the small experiment preset, C = 8, 1 cell per stage, on the embedded
  digits (1000 images of 1x8x8), batch 64;
- nb201: the authors' supernet (C = 16, 5 cells per stage) on the same 1x8x8
  digits, batch 64: a cheap stand-in, its steps are far shorter than theirs;
- authors: the authors' supernet on their input, 3x32x32 (CIFAR-10-shaped
  random data, N = 50,000), batch 256: the step their users pay for.
--steps S times epochs of S steps (the authors' has 195); the epoch end is
then amortised over the full epoch's steps in the "sampling work alone" table,
as in a real run, while the whole-epoch table runs it every S steps.

Usage (from the repository root, after build_ext --inplace):
    python benchmarks/bench_overhead.py [--shape small|nb201|authors]
        [--threads 1] [--repeats 10] [--steps S] [--device cuda] [--quick]
Prints a table and writes benchmarks/results/overhead_<shape>_<device>_t<threads>.json.
On this CPU, `--shape authors --threads 2 --repeats 3 --steps 3` takes a few minutes.
"""

import copy
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
# The repository's own build first (an installed pada_ext elsewhere must not shadow it).
sys.path[:0] = [HERE, os.path.join(HERE, ".."), os.path.join(HERE, "..", "python")]

from common import (  # noqa: E402
    bench_parser,
    machine_info,
    parse_bench_args,
    print_table,
    sync,
    time_once,
    write_json,
)
from pada_nas.nb201 import CONV_OPS, NUM_EDGES, Supernet  # noqa: E402

import pada_ext  # noqa: E402
from pada_ext import ImportanceSampler, PathSampler  # noqa: E402

SHAPES = {
    # the small experiment preset: digits (N = 1000, 1x8x8), 16 steps/epoch
    "small": dict(channels=8, cells=1, batch=64, data="digits"),
    # the authors' supernet (C=16, 5 cells per stage) on the same 1x8x8 digits
    "nb201": dict(channels=16, cells=5, batch=64, data="digits"),
    # the authors' run: their supernet on CIFAR-10-shaped random data
    # (N = 50,000, 3x32x32), batch 256
    "authors": dict(channels=16, cells=5, batch=256, data="cifar_shaped"),
}
NUM_OPS = 5


def load_data(kind):
    if kind == "digits":
        from pada_nas.data import digits

        s = digits(1000, 0)
        return s.x_train, s.y_train, 10
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(50_000, 3, 32, 32, generator=g),
        torch.randint(10, (50_000,), generator=g),
        10,
    )


class Variant:
    """One training setup; `run_epoch(paths)` trains an epoch on the given paths."""

    def __init__(self, name, model, x, y, batch, epochs, seed):
        self.name, self.model, self.x, self.y, self.batch = name, model, x, y, batch
        self.n = len(y)
        self.epochs = epochs
        self.epoch = 0
        # Listed once: model.parameters() walks every module, a cost common to all
        # variants that would only dilute the overhead being measured.
        self.params = list(model.parameters())
        self.opt = torch.optim.SGD(self.params, 0.05, momentum=0.9, weight_decay=2.5e-4)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.setup()

    def setup(self):
        pass

    def after_step(self, path):
        pass

    def step(self, x, y, idx, path):
        """A training step; the variant's own draw runs (and is paid for) but the
        network trains on `path`, the same for every variant."""
        self.draw()
        logits = self.model(x, path)
        loss = self.loss(logits, y, idx)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        self.after_step(path)
        return loss

    def run_epoch(self, paths):
        for s, path in enumerate(paths):
            idx = self.order[s * self.batch : (s + 1) * self.batch]
            self.step(self.x[idx], self.y[idx], idx, path)
        self.epoch += 1
        self.epoch_end()


class Spos(Variant):
    def draw(self):
        return torch.randint(NUM_OPS, (NUM_EDGES,), generator=self.gen).tolist()

    def loss(self, z, t, idx):
        return F.cross_entropy(z, t)

    def epoch_end(self):
        self.order = torch.randperm(self.n, generator=self.gen)


class PadaFused(Variant):
    def setup(self):
        self.ps = PathSampler.paper(self.model.decisions(), self.epochs, seed=1)
        self.ds = ImportanceSampler.paper(self.n, self.epochs, seed=2)
        self.ps.set_epoch(0)
        self.ds.set_epoch(0)

    def draw(self):
        return self.ps.sample()

    def loss(self, z, t, idx):
        return self.ds.cross_entropy(z, t, idx)

    def after_step(self, path):
        self.ps.record(path)

    def epoch_end(self):
        self.ps.set_epoch(self.epoch)
        self.ds.set_epoch(self.epoch)
        self.order = self.ds.epoch_indices()


class PadaUnfused(Variant):
    """The authors' bookkeeping, restated (see the module docstring)."""

    def setup(self):
        self.rng = np.random.default_rng(3)
        self.p = np.full(NUM_OPS, 1.0 / NUM_OPS)
        self.op_scores = np.zeros(NUM_OPS)
        self.data_scores = np.zeros(self.n)
        self.seen_idx, self.seen_scores = [], []
        self.convs = [
            [
                [cell.edges[k][j][1] if j in CONV_OPS else None for j in range(NUM_OPS)]
                for k in range(NUM_EDGES)
            ]
            for cell in self.model.cells
        ]

    def draw(self):
        return self.rng.choice(NUM_OPS, size=NUM_EDGES, p=self.p)  # their per-step draw

    def loss(self, logits, y, idx):
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            g = F.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1])
            self.seen_scores.append(g.norm(dim=1).cpu().numpy())
            self.seen_idx.append(idx.cpu().numpy())
        return loss

    def after_step(self, path):
        per_op = [0.0] * NUM_OPS
        for cell in self.convs:
            for k, j in enumerate(path):
                conv = cell[k][j]
                if conv is not None:
                    per_op[j] += conv.weight.grad.norm().item() + conv.bias.grad.norm().item()
        for j in range(NUM_OPS):
            if per_op[j] != 0.0:
                self.op_scores[j] = (self.op_scores[j] + per_op[j] / path.count(j)) / 2

    def epoch_end(self):
        scores = np.zeros(self.n)
        for idxs, vals in zip(self.seen_idx, self.seen_scores):
            for i, v in zip(idxs, vals):  # their Python loop, in visit order
                scores[i] = v if scores[i] == 0 else (scores[i] + v) / 2
        self.seen_idx, self.seen_scores = [], []
        tau = delta = max(self.epoch - 1, 0) / self.epochs
        q = tau * scores / scores.sum() + (1 - tau) / self.n
        self.order = torch.from_numpy(self.rng.choice(self.n, size=self.n, replace=True, p=q))
        total = self.op_scores.sum()
        share = self.op_scores / total if total > 0 else np.full(NUM_OPS, 1.0 / NUM_OPS)
        self.p = delta * share + (1 - delta) / NUM_OPS
        self.op_scores = np.zeros(NUM_OPS)


def min_us(fn, device, setup=None, repeats=200):
    """Minimum over `repeats` single calls of fn(), in microseconds (setup untimed)."""
    best = float("inf")
    for _ in range(repeats):
        if setup is not None:
            setup()
        best = min(best, time_once(fn, device))
    return best * 1e3


def bookkeeping(cls, base, x, y, batch, steps, seed, device, repeats=200):
    """The sampling work of a variant alone, per step (us), on real gradients.

    Each part is the minimum of many calls, so it is robust to a noisy machine
    where whole epochs are not: draw, loss (forward + backward of the loss from
    the logits: the DA scores), after_step (PA scores) and epoch_end amortised
    over a full epoch's len(y) // batch steps (`steps` only shortens the
    warm-up epochs).
    """
    epoch_steps = len(y) // batch
    v = cls(cls.__name__, copy.deepcopy(base), x, y, batch, 10**6, seed)
    path = [2, 3, 3, 2, 1, 4]  # 3 conv 1x1, ... a mid-cost path with both convs
    v.run_epoch([path] * steps)
    v.run_epoch([path] * steps)
    idx = v.order[:batch]
    with torch.no_grad():
        z0 = v.model(x[idx], path)
    yb = y[idx]

    def loss_part():
        z = z0.clone().requires_grad_()
        v.loss(z, yb, idx).backward()
        sync(device)

    parts = {
        "draw": min_us(v.draw, device, repeats=repeats),
        "loss": min_us(loss_part, device, repeats=repeats),
        "after_step": min_us(lambda: (v.after_step(path), sync(device)), device, repeats=repeats),
    }
    few = max(1, repeats // 10)
    if isinstance(v, PadaUnfused):
        # refill one epoch's (index, score) pairs before each timed epoch end
        def refill():
            v.seen_idx, v.seen_scores = [], []
            for s in range(epoch_steps):
                v.loss(z0, yb, v.order[s * batch : (s + 1) * batch][: len(yb)])

        parts["epoch_end"] = min_us(v.epoch_end, device, refill, repeats=few) / epoch_steps
    else:

        def epoch_end():
            v.epoch += 1
            v.epoch_end()
            sync(device)

        parts["epoch_end"] = min_us(epoch_end, device, repeats=few) / epoch_steps
    parts["total"] = sum(parts.values())
    return parts


VARIANTS = {"spos": Spos, "pada_fused": PadaFused, "pada_unfused": PadaUnfused}


def parse_args():
    ap = bench_parser(__doc__.split("\n\n")[0], threads=1)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--repeats", type=int, help="timed epochs per variant (default 10, quick 1)")
    ap.add_argument("--steps", type=int, help="steps per epoch (default: a full epoch; quick 2)")
    args = parse_bench_args(ap, repeats=(1, 10))
    if args.steps is None and args.quick:
        args.steps = 2
    return args


def time_epochs(variants, steps, repeats, device):
    """ms per step of each variant's epochs: 2 warm-up epochs, then `repeats`
    timed ones; every variant trains on the same seeded path sequence, and who
    goes first rotates."""
    path_gen = torch.Generator().manual_seed(123)

    def paths():
        return torch.randint(NUM_OPS, (steps, NUM_EDGES), generator=path_gen).tolist()

    for _ in range(2):  # warm-up: allocator, caches, delta/tau become > 0
        seq = paths()
        for v in variants:
            v.run_epoch(seq)
    times = {v.name: [] for v in variants}
    for r in range(repeats):
        seq = paths()
        order = variants[r % 3 :] + variants[: r % 3]  # rotate who goes first
        for v in order:
            sync(device)
            t0 = time.perf_counter()
            v.run_epoch(seq)
            sync(device)
            times[v.name].append((time.perf_counter() - t0) / steps * 1e3)
    return times


def epoch_table(times):
    """Rows of the whole-epoch table (min and median against SPOS) and their JSON."""
    spos_min, spos_med = min(times["spos"]), statistics.median(times["spos"])
    rows, results = [], {}
    for name, ts in times.items():
        mn, md = min(ts), statistics.median(ts)
        results[name] = {"ms_per_step_min": mn, "ms_per_step_median": md, "all": ts}
        rows.append(
            [
                name,
                f"{mn:.2f}",
                f"{md:.2f}",
                f"{100 * (mn / spos_min - 1):+.1f}%",
                f"{100 * (md / spos_med - 1):+.1f}%",
            ]
        )
    return rows, results


def sampling_table(parts, spos_step_ms):
    """Rows of the sampling-work table: each part, the total, and its excess over SPOS."""
    rows = []
    for name, p in parts.items():
        extra = p["total"] - parts["spos"]["total"]
        rows.append(
            [name]
            + [f"{p[k]:.0f}" for k in ("draw", "loss", "after_step", "epoch_end", "total")]
            + [f"{extra:+.0f}", f"{100 * extra / (spos_step_ms * 1e3):+.2f}%"]
        )
    return rows


def main():
    args = parse_args()
    device = args.device
    shape = SHAPES[args.shape]
    x, y, classes = load_data(shape["data"])
    x, y = x.to(device), y.to(device)
    batch = shape["batch"]
    steps = args.steps or len(y) // batch
    torch.manual_seed(0)
    base = Supernet(shape["channels"], shape["cells"], classes, x.shape[1]).to(device)
    # The schedules span the whole run (warm-up included): delta, tau > 0 when timed.
    epochs = args.repeats + 3
    variants = [
        cls(name, copy.deepcopy(base), x, y, batch, epochs, seed=i)
        for i, (name, cls) in enumerate(VARIANTS.items())
    ]
    times = time_epochs(variants, steps, args.repeats, device)
    rows, results = epoch_table(times)
    image = "x".join(map(str, x.shape[1:]))
    print(
        f"{args.shape}: C={shape['channels']}, {shape['cells']} cells/stage, input {image} "
        f"({shape['data']}), batch {batch}, N={len(y)}, {steps} steps/epoch timed "
        f"(a full epoch has {len(y) // batch}), {args.repeats} epochs per variant, "
        f"{args.threads} thread(s), {device}"
    )
    print_table(
        ["variant", "ms/step min", "ms/step median", "vs SPOS (min)", "vs SPOS (median)"], rows
    )
    parts = {
        name: bookkeeping(cls, base, x, y, batch, steps, i, device, 10 if args.quick else 200)
        for i, (name, cls) in enumerate(VARIANTS.items())
    }
    print("\nSampling work alone, us per step (min of many calls; epoch end amortised):")
    print_table(
        [
            "variant",
            "draw",
            "loss fwd+bwd",
            "after step",
            "epoch end",
            "total",
            "vs SPOS",
            "of SPOS step (min)",
        ],
        sampling_table(parts, min(times["spos"])),
    )
    results["bookkeeping_us_per_step"] = parts
    path = write_json(
        f"overhead_{args.shape}_{device.type}_t{args.threads}",
        {
            "shape": args.shape,
            **shape,
            "input": list(x.shape[1:]),
            "full_epoch_steps": len(y) // batch,
            "steps_per_epoch": steps,
            "n": len(y),
            "repeats": args.repeats,
            "quick": args.quick,
            "machine": machine_info(device),
            "results": results,
        },
    )
    print(f"pada_ext from {os.path.dirname(pada_ext.__file__)}; wrote {path}")


if __name__ == "__main__":
    main()
