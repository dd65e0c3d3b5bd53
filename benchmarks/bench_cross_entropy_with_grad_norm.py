"""Forward + backward of cross_entropy_with_grad_norm against F.cross_entropy,
and against the authors' way (F.cross_entropy, then norm(softmax - one_hot)
under no_grad, as PA&DA's data sampling does each step).

    python benchmarks/bench_cross_entropy_with_grad_norm.py [--device cuda] [--threads 2]
        [--dtypes float32 bfloat16] [--backend native|triton] [--quick]

Prints a table (min over runs, ms) and writes benchmarks/results/<this name>.json
(<this name>_cuda.json on a GPU). On CUDA the default is every backend there
(the compiled kernel and Triton) in float32 and bfloat16, with two larger
shapes (an LLM-sized vocabulary).
"""

import argparse
import os

import torch
import torch.nn.functional as F
from common import (
    add_device_args,
    best_time,
    is_cuda,
    machine_info,
    resolve_device,
    result_name,
    write_json,
)

import pada_ext
from pada_ext import _dispatch
from pada_ext.ops import cross_entropy_with_grad_norm

SHAPES = [(256, 10), (256, 1000), (4096, 1000), (1024, 32000)]
CUDA_SHAPES = SHAPES + [(8192, 32000), (4096, 128256)]
QUICK_SHAPES = [(64, 10), (32, 1000)]


def plain(x, y):
    F.cross_entropy(x, y).backward()


def fused(x, y, backend):
    loss, norm = cross_entropy_with_grad_norm(x, y, backend=backend)
    loss.backward()
    return norm


def authors(x, y):
    F.cross_entropy(x, y).backward()
    with torch.no_grad():
        return torch.norm(F.softmax(x, dim=1) - F.one_hot(y, x.shape[1]), dim=1)


def time_ms(fn, device, runs, inner):
    """Min over `runs` of the mean time of `inner` back-to-back calls, in ms."""

    def calls():
        for _ in range(inner):
            fn()

    return best_time(calls, runs, device, warmup=3) / inner


def bench_shape(n, c, device, args, dtype=torch.float32, backend=None):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(n, c, generator=g) * 3).to(device=device, dtype=dtype).requires_grad_()
    y = torch.randint(0, c, (n,), generator=g).to(device)
    inner = max(1, min(50, 2_000_000 // (n * c)))  # ~2M elements per timed run

    def run(fn):
        def step():
            x.grad = None
            fn(x, y)

        return time_ms(step, device, args.runs, inner)

    return {
        "ce": run(plain),
        "fused": run(lambda x, y: fused(x, y, backend)),
        "authors": run(authors),
    }


def cuda_backends():
    """The backends that serve the op on CUDA here: compiled kernel and/or Triton."""
    found = []
    if _dispatch.has_native_kernel("cross_entropy_with_grad_norm_fwd", "CUDA"):
        found.append("native")
    if _dispatch.triton_available():
        found.append("triton")
    return found or [None]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, help="default 7 (--quick: 2)")
    p.add_argument("--backend", default=None, help="native, triton or None (best; cuda: each)")
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=["float32", "bfloat16", "float16"],
        help="default float32 (cuda: float32 bfloat16)",
    )
    add_device_args(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = is_cuda(device)
    if args.runs is None:
        args.runs = 2 if args.quick else 7
    dtypes = args.dtypes or (["float32", "bfloat16"] if cuda else ["float32"])
    backends = [args.backend] if args.backend or not cuda else cuda_backends()
    shapes = QUICK_SHAPES if args.quick else CUDA_SHAPES if cuda else SHAPES

    rows = []
    for dtype in dtypes:
        for backend in backends:
            print(f"torch {torch.__version__}, pada_ext {pada_ext.__version__}, {device}, ", end="")
            print(f"{args.threads} threads, backend {backend or 'auto'}", end="")
            print(f", {dtype}" if cuda or dtype != "float32" else "")
            head = ("N x C", "F.cross_entropy", "fused", "authors", "fused/ce", "authors/fused")
            print("{:>14} {:>16} {:>9} {:>9} {:>9} {:>14}".format(*head))
            for n, c in shapes:
                t = bench_shape(n, c, device, args, getattr(torch, dtype), backend)
                row = {"n": n, "c": c, "dtype": dtype, "backend": backend or "auto"}
                row.update({f"{k}_ms": v for k, v in t.items()})
                row["fused_over_ce"] = t["fused"] / t["ce"]
                row["authors_over_fused"] = t["authors"] / t["fused"]
                rows.append(row)
                print(
                    f"{f'{n} x {c}':>14} {t['ce']:16.3f} {t['fused']:9.3f} {t['authors']:9.3f} "
                    f"{row['fused_over_ce']:9.2f} {row['authors_over_fused']:14.2f}"
                )

    out = {
        "benchmark": "cross_entropy_with_grad_norm forward+backward, min over runs (ms)",
        "machine": machine_info(device),
        "dtypes": dtypes,
        "quick": args.quick,
        "rows": rows,
    }
    name = os.path.splitext(os.path.basename(__file__))[0]
    print(f"wrote {write_json(result_name(name, device), out)}")


if __name__ == "__main__":
    main()
