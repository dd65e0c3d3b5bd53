"""Data importance sampling bookkeeping per epoch: pada_ext.ImportanceSampler
against the authors' way, for N items and one epoch of N samples in batches.

The authors' epoch end: a Python loop over the epoch's (index, norm) pairs
applying their rule, then numpy's choice of the next epoch's N indices.
Ours: set_epoch (freeze the table, apply tau) and the draw, as a DataLoader
gets it (a list of ints). The per-batch side is reported too: theirs copies
each batch's norms to the host (.cpu().numpy()) and extends Python lists;
ours calls update() (no host sync) once per batch.

    python benchmarks/bench_importance_sampler.py [--sizes 50000 1281167] [--device cuda]
        [--quick]
"""

import sys

import numpy as np
import torch
from common import bench_parser, best_time, parse_bench_args, print_table, save_results

from pada_ext import ImportanceSampler

BATCH = 256
TAU = 0.5


def epoch_data(n, device):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(n, (n,), generator=g).to(device)  # a bootstrap epoch, as theirs
    norms = (torch.rand(n, generator=g) * 1.4).to(device)
    return list(zip(idx.split(BATCH), norms.split(BATCH)))


def authors_per_batch(batches):
    """What the authors' loop does per step with the scores: host copies, list extends."""
    all_norms, all_idx = [], []
    for idx, norms in batches:
        all_norms.extend(norms.cpu().numpy())
        all_idx.extend(idx.cpu().numpy())
    return all_idx, all_norms


def authors_epoch_end(all_idx, all_norms, n, rng):
    score = np.zeros(n)
    for i, g in zip(all_idx, all_norms):
        if score[i] != 0:
            score[i] = np.mean([score[i], g])
        else:
            score[i] = g
    prob = score / np.sum(score)
    prob = prob * TAU + (1 - TAU) * np.full(n, 1.0 / n)
    return rng.choice(np.arange(n), size=n, replace=True, p=prob).tolist()


def ours_per_batch(sampler, batches):
    for idx, norms in batches:
        sampler.update(idx, norms)


def ours_epoch_end(sampler, epoch):
    sampler._applied_epoch = None  # let the timing loop start "the same" epoch again
    sampler.set_epoch(epoch)
    return list(sampler)


def measure(n, device, repeats):
    batches = epoch_data(n, device)
    rng = np.random.default_rng(0)
    sampler = ImportanceSampler(n, tau=TAU, rule="paper", seed=0, device=device)
    sampler.set_epoch(0)
    ours_per_batch(sampler, batches)
    all_idx, all_norms = authors_per_batch(batches)
    slow = max(1, repeats // 3)
    ms = {
        "authors: per batch": best_time(lambda: authors_per_batch(batches), slow, device),
        "authors: epoch end": best_time(
            lambda: authors_epoch_end(all_idx, all_norms, n, rng), slow, device
        ),
        "pada_ext: per batch": best_time(lambda: ours_per_batch(sampler, batches), repeats, device),
        "pada_ext: epoch end": best_time(lambda: ours_epoch_end(sampler, 1), repeats, device),
    }
    # The two must agree on what they compute: the same scores for the same epoch.
    check = ImportanceSampler(n, tau=TAU, rule="paper", seed=0, device=device)
    check.set_epoch(0)
    ours_per_batch(check, batches)
    check.set_epoch(1)
    theirs = np.zeros(n)
    for i, g in zip(all_idx, all_norms):
        theirs[i] = (theirs[i] + g) / 2 if theirs[i] != 0 else g
    np.testing.assert_allclose(check.epoch_scores.cpu().numpy(), theirs, rtol=1e-5, atol=1e-6)
    return ms


def main(argv=None):
    ap = bench_parser(__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, help="default 50000 1281167 (--quick: 2000)")
    ap.add_argument("--repeats", type=int, help="default 5 (--quick: 2)")
    args = parse_bench_args(ap, argv, sizes=([2000], [50_000, 1_281_167]), repeats=(2, 5))
    print(
        f"ImportanceSampler epoch bookkeeping, batch {BATCH}, {args.device}, "
        f"{torch.get_num_threads()} threads; min of repeats, ms"
    )
    results, rows = [], []
    for n in args.sizes:
        ms = measure(n, args.device, args.repeats)
        theirs_total = ms["authors: per batch"] + ms["authors: epoch end"]
        ours_total = ms["pada_ext: per batch"] + ms["pada_ext: epoch end"]
        results.append({"n": n, "ms": ms})
        rows.append(
            [
                n,
                f"{ms['authors: epoch end']:.1f}",
                f"{ms['pada_ext: epoch end']:.1f}",
                f"{ms['authors: epoch end'] / ms['pada_ext: epoch end']:.1f}x",
                f"{theirs_total:.1f}",
                f"{ours_total:.1f}",
                f"{theirs_total / ours_total:.1f}x",
            ]
        )
    print_table(
        [
            "N",
            "authors epoch end",
            "pada_ext epoch end",
            "speedup",
            "authors per epoch (all)",
            "pada_ext per epoch (all)",
            "speedup (all)",
        ],
        rows,
    )
    save_results("importance_sampler", args.device, quick=args.quick, batch=BATCH, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
