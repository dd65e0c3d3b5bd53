"""Weighted sampling with replacement, N = M: pada_ext against torch.multinomial,
WeightedRandomSampler, numpy's Generator.choice and, as the floor no weighted
draw can beat, torch.randint(N, (M,)). Float32 weights, one run, min of repeats.
On CUDA: the compiled kernel and the Triton one against torch.multinomial and
torch.randint (the host-side baselines are CPU-only), sizes 1e6 to 1e8.

    python benchmarks/bench_sample_with_replacement.py [--sizes 1e5 1e6 1e7 1e8]
        [--threads 2] [--device cpu|cuda] [--quick]
"""

import argparse
import sys

import numpy as np
import torch
from common import (
    add_device_args,
    best_time,
    is_cuda,
    machine_info,
    print_table,
    resolve_device,
    result_name,
    write_json,
)

import pada_ext
from pada_ext import _dispatch

MULTINOMIAL_LIMIT = 2**24
# Baselines that take minutes at the largest size are skipped past this N.
SLOW_BASELINE_LIMIT = 10**7
SIZES = {"cpu": [1e5, 1e6, 1e7, 1e8], "cuda": [1e6, 1e7, 1e8], "quick": [1e3, 1e4]}


def triton_on_cuda(device):
    """Whether to time the Triton kernel as well: on CUDA, when it is not already the default."""
    return (
        is_cuda(device)
        and _dispatch.triton_available()
        and _dispatch.has_native_kernel("sample_with_replacement", "CUDA")
    )


def measure(n, device, repeats):
    """Milliseconds per method for N = M = n."""
    w = torch.rand(n, dtype=torch.float32, device=device) + 1e-3
    ms = {
        "pada_ext": best_time(lambda: pada_ext.ops.sample_with_replacement(w, n), repeats, device),
        "torch.randint": best_time(lambda: torch.randint(n, (n,), device=device), repeats, device),
    }
    if triton_on_cuda(device):
        ms["pada_ext triton"] = best_time(
            lambda: pada_ext.ops.sample_with_replacement(w, n, backend="triton"), repeats, device
        )
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


def cuda_row(n, ms):
    fmt = lambda k: f"{ms[k]:.3f}" if k in ms else "n/a"  # noqa: E731
    speedup = ms["torch.multinomial"] / ms["pada_ext"] if "torch.multinomial" in ms else None
    return [
        f"{n:.0e}",
        fmt("pada_ext"),
        fmt("pada_ext triton"),
        fmt("torch.multinomial"),
        fmt("torch.randint"),
        f"{speedup:.1f}x" if speedup else "refuses N > 2^24",
        f"{ms['pada_ext'] / ms['torch.randint']:.2f}x",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, help="default: 1e5..1e8 (cuda: 1e6..1e8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, help="default 5 (cuda: 10, --quick: 2)")
    add_device_args(ap)
    args = ap.parse_args(argv)
    args.device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    cuda = is_cuda(args.device)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 10 if cuda else 5
    if args.sizes is None:
        args.sizes = SIZES["quick" if args.quick else args.device.type]
    sizes = [int(s) for s in args.sizes]
    print(
        f"sample_with_replacement, N = M, float32 weights, {args.device}, "
        f"{torch.get_num_threads()} threads; min of repeats, ms"
    )
    results = []
    for n in sizes:
        # Large sizes take seconds per call on a CPU, milliseconds on a GPU.
        repeats = args.repeats if n <= 10**6 or cuda else max(2, args.repeats // 2)
        results.append({"n": n, "ms": measure(n, args.device, repeats)})
    if cuda:
        print_table(
            [
                "N = M",
                "pada_ext",
                "pada_ext triton",
                "torch.multinomial",
                "torch.randint",
                "multinomial / pada_ext",
                "pada_ext / randint",
            ],
            [cuda_row(r["n"], r["ms"]) for r in results],
        )
    else:
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
            [table_row(r["n"], r["ms"]) for r in results],
        )
    backend = _dispatch.resolve_backend("sample_with_replacement", None, args.device)
    path = write_json(
        result_name("sample_with_replacement", args.device),
        {
            "machine": machine_info(args.device),
            "pada_ext_backend": backend,
            "quick": args.quick,
            "results": results,
        },
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
