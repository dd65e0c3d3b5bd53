"""Weighted sampling with replacement, N = M: pada_ext against torch.multinomial,
WeightedRandomSampler, numpy's Generator.choice and, as the floor no weighted
draw can beat, torch.randint(N, (M,)). Float32 weights, one run, min of repeats.

    python benchmarks/bench_sample_with_replacement.py [--sizes 1e5 1e6 1e7 1e8]
        [--threads 2] [--device cpu|cuda]
"""

import argparse
import sys

import numpy as np
import torch
from common import best_time, machine_info, print_table, write_json

import pada_ext

MULTINOMIAL_LIMIT = 2**24
# Baselines that take minutes at the largest size are skipped past this N.
SLOW_BASELINE_LIMIT = 10**7


def measure(n, device, repeats):
    """Milliseconds per method for N = M = n."""
    w = torch.rand(n, dtype=torch.float32, device=device) + 1e-3
    ms = {
        "pada_ext": best_time(lambda: pada_ext.ops.sample_with_replacement(w, n), repeats, device),
        "torch.randint": best_time(lambda: torch.randint(n, (n,), device=device), repeats, device),
    }
    if n <= MULTINOMIAL_LIMIT:
        ms["torch.multinomial"] = best_time(
            lambda: torch.multinomial(w, n, replacement=True), repeats, device
        )
    if n <= SLOW_BASELINE_LIMIT and torch.device(device).type == "cpu":
        sampler = torch.utils.data.WeightedRandomSampler(w, n, replacement=True)
        ms["WeightedRandomSampler"] = best_time(lambda: list(sampler), max(1, repeats // 2))
        p = w.double().numpy()
        p /= p.sum()
        rng = np.random.default_rng(0)
        ms["numpy choice"] = best_time(
            lambda: rng.choice(n, size=n, replace=True, p=p), max(1, repeats // 2)
        )
    return ms


def table_row(n, ms):
    fmt = lambda k: f"{ms[k]:.1f}" if k in ms else "n/a"  # noqa: E731
    speedup = ms["torch.multinomial"] / ms["pada_ext"] if "torch.multinomial" in ms else None
    return [
        f"{n:.0e}",
        fmt("pada_ext"),
        fmt("torch.multinomial"),
        fmt("WeightedRandomSampler"),
        fmt("numpy choice"),
        fmt("torch.randint"),
        f"{speedup:.1f}x" if speedup else "refuses N > 2^24",
        f"{ms['pada_ext'] / ms['torch.randint']:.2f}x",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7, 1e8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes]
    print(
        f"sample_with_replacement, N = M, float32 weights, {args.device}, "
        f"{torch.get_num_threads()} threads; min of repeats, ms"
    )
    results = []
    for n in sizes:
        repeats = args.repeats if n <= 10**6 else max(2, args.repeats // 2)
        results.append({"n": n, "ms": measure(n, args.device, repeats)})
    rows = [table_row(r["n"], r["ms"]) for r in results]
    print_table(
        [
            "N = M",
            "pada_ext",
            "torch.multinomial",
            "WeightedRandomSampler",
            "numpy choice",
            "torch.randint",
            "multinomial / pada_ext",
            "pada_ext / randint",
        ],
        rows,
    )
    path = write_json(
        "sample_with_replacement", {"machine": machine_info(args.device), "results": results}
    )
    print(f"wrote {path}")
    goal = next((r for r in results if r["n"] == 10**7), None)
    if goal is not None and "torch.multinomial" in goal["ms"]:
        ms = goal["ms"]
        speedup = ms["torch.multinomial"] / ms["pada_ext"]
        floor = ms["pada_ext"] / ms["torch.randint"]
        print(
            f"N = M = 1e7: {speedup:.1f}x faster than torch.multinomial (goal >= 25x), "
            f"{floor:.2f}x torch.randint (goal <= 3x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
