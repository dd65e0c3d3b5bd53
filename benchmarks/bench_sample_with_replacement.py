"""Weighted sampling with replacement, N = M: pada_ext against torch.multinomial,
WeightedRandomSampler, numpy's Generator.choice and, as the floor no weighted
draw can beat, torch.randint(N, (M,)). Float32 weights, one run, min of repeats.
On CUDA: the compiled kernel and the Triton one against torch.multinomial and
torch.randint (the host-side baselines are CPU-only), sizes 1e6 to 1e8.

    python benchmarks/bench_sample_with_replacement.py [--sizes 1e5 1e6 1e7 1e8]
        [--threads 2] [--device cpu|cuda] [--quick]

Memory model. Besides the times, each row gives the bytes one pada_ext call must
move at the least, and the time that takes at this machine's measured copy
bandwidth (the "memory floor"), so that the table shows how far a figure is
from the memory limit, not only from the baselines. For N weights of E bytes
(4 for float32), M draws and S table slots (N rounded up to whole blocks of
L = min(4096, 2^ceil(log2 N)) slots):

    weights read once      E N    (the second pass of the build hits cache)
    table written          8 S
    table read             8 M    (one 8-byte entry per draw)
    output written         8 M    (int64 indices)

A lower bound: the draws read the table at random, so where it is larger than
the cache each read actually moves a 64-byte line, and a first touch of fresh
memory costs a page fault. The bandwidth is that of `dst.copy_(src)` on
256 MiB tensors, min time of repeats, counting the bytes read plus those
written (2 x 256 MiB), with the benchmark's thread count.
"""

import sys

import numpy as np
import torch
from common import (
    bench_parser,
    best_time,
    is_cuda,
    parse_bench_args,
    print_table,
    save_results,
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


BANDWIDTH_BYTES = 256 << 20
MAX_LOG_BLOCK = 12  # csrc/common/sample_with_replacement.h: kMaxLogBlock


def copy_bandwidth(device, repeats):
    """Bytes per second of a large tensor copy (read + written), min time of repeats."""
    src = torch.ones(BANDWIDTH_BYTES // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = best_time(lambda: dst.copy_(src), repeats, device, warmup=2)
    return 2 * BANDWIDTH_BYTES / (ms * 1e-3)


def bytes_moved(n, m, elem_bytes=4):
    """The least bytes one call moves (docstring's model): weights, table, output."""
    log_block = min(MAX_LOG_BLOCK, max(0, (n - 1).bit_length()))
    slots = -(-n // (1 << log_block)) << log_block
    return elem_bytes * n + 8 * slots + 8 * m + 8 * m


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


def memory_cells(r):
    """MB moved, GB/s achieved, the memory floor (ms) and pada_ext / floor, for a result row."""
    return [
        f"{r['bytes'] / 1e6:.1f}",
        f"{r['bytes'] / (r['ms']['pada_ext'] * 1e-3) / 1e9:.1f}",
        f"{r['memory_floor_ms']:.2f}",
        f"{r['ms']['pada_ext'] / r['memory_floor_ms']:.1f}x",
    ]


MEMORY_HEADERS = ["MB moved", "GB/s", "memory floor", "pada_ext / floor"]


CPU_COLUMNS = (
    "pada_ext",
    "torch.multinomial",
    "WeightedRandomSampler",
    "numpy choice",
    "torch.randint",
)
CUDA_COLUMNS = ("pada_ext", "pada_ext triton", "torch.multinomial", "torch.randint")


def table_row(n, ms, columns, digits):
    """N, the ms of each of `columns`, multinomial / pada_ext and pada_ext / randint."""
    fmt = lambda k: f"{ms[k]:.{digits}f}" if k in ms else "n/a"  # noqa: E731
    speedup = ms["torch.multinomial"] / ms["pada_ext"] if "torch.multinomial" in ms else None
    return [
        f"{n:.0e}",
        *map(fmt, columns),
        f"{speedup:.1f}x" if speedup else "refuses N > 2^24",
        f"{ms['pada_ext'] / ms['torch.randint']:.2f}x",
    ]


def main(argv=None):
    ap = bench_parser(__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, help="default: 1e5..1e8 (cuda: 1e6..1e8)")
    ap.add_argument("--repeats", type=int, help="default 5 (cuda: 10, --quick: 2)")
    args = parse_bench_args(ap, argv)
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
    bandwidth = copy_bandwidth(args.device, max(3, args.repeats))
    print(f"copy bandwidth (read + written): {bandwidth / 1e9:.1f} GB/s")
    results = []
    for n in sizes:
        # Large sizes take seconds per call on a CPU, milliseconds on a GPU.
        repeats = args.repeats if n <= 10**6 or cuda else max(2, args.repeats // 2)
        moved = bytes_moved(n, n)
        results.append(
            {
                "n": n,
                "ms": measure(n, args.device, repeats),
                "bytes": moved,
                "memory_floor_ms": moved / bandwidth * 1e3,
            }
        )
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
                *MEMORY_HEADERS,
            ],
            [table_row(r["n"], r["ms"], CUDA_COLUMNS, 3) + memory_cells(r) for r in results],
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
                *MEMORY_HEADERS,
            ],
            [table_row(r["n"], r["ms"], CPU_COLUMNS, 1) + memory_cells(r) for r in results],
        )
    backend = _dispatch.resolve_backend("sample_with_replacement", None, args.device)
    save_results(
        "sample_with_replacement",
        args.device,
        pada_ext_backend=backend,
        quick=args.quick,
        copy_bandwidth_bytes_per_s=bandwidth,
        results=results,
    )
    for r in results:
        ms = r["ms"]
        line = f"N = M = {r['n']:.0e}: {ms['pada_ext'] / ms['torch.randint']:.2f}x torch.randint"
        if "torch.multinomial" in ms and r["n"] in (10**6, 10**7):
            speedup = ms["torch.multinomial"] / ms["pada_ext"]
            line += f", {speedup:.1f}x faster than torch.multinomial (goal >= 30x)"
        if not cuda and r["n"] in (10**5, 10**6, 10**7, 10**8):
            print(line + " (goal <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
