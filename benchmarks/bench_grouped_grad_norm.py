"""Per-call cost of the per-op gradient norms of one NAS-Bench-201 path.

The gradients are those PA scores: the conv weight and bias of every edge of
the path in each of the 15 search cells (C = 16, 32, 64 over the 3 stages; the
reduction blocks are not scored). NB201's ReLUConvBN has bias=True because its
BatchNorm is affine=False. The default path has 3 nor_conv_3x3 and 3
nor_conv_1x1 edges: 180 tensors, ~0.81M elements, grouped by op (5 groups).

Usage (from the repository root, after build_ext --inplace or an install):
    python benchmarks/bench_grouped_grad_norm.py [--device cuda] [--threads 2]
        [--dtype bfloat16] [--width 4] [--quick]
Writes a table to stdout and JSON to benchmarks/results/<name>.json. On CUDA
the Triton kernel is timed too; --width multiplies the channels (a wider
supernet: 16x the elements at --width 4) where the default is launch-bound.
"""

import torch
from common import (
    bench_parser,
    interleaved_best,
    is_cuda,
    machine_info,
    parse_bench_args,
    write_json,
)

import pada_ext  # noqa: F401
from pada_ext import _dispatch, ops

NUM_OPS = 5  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
KERNEL = {2: 1, 3: 3}


def nb201_path_grads(path, device, dtype, seed=0, width=1):
    """Gradient-like tensors of the conv edges of `path`, and each one's op."""
    gen = torch.Generator().manual_seed(seed)
    grads, ops_of = [], []
    for c in (16 * width, 32 * width, 64 * width):
        for _cell in range(5):
            for op in path:
                if op not in KERNEL:
                    continue
                k = KERNEL[op]
                for shape in ((c, c, k, k), (c,)):
                    g = torch.randn(shape, generator=gen) * 1e-2
                    grads.append(g.to(device=device, dtype=dtype))
                    ops_of.append(op)
    return grads, ops_of


def main():
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--path", default="3,3,3,2,2,2", help="op of each of the 6 edges")
    parser.add_argument("--width", type=int, default=1, help="channel multiplier (1: NB201)")
    parser.add_argument("--repeats", type=int, help="default 30 (--quick: 2)")
    parser.add_argument("--inner", type=int, help="default 20 (--quick: 2)")
    parser.add_argument("--name", default=None, help="JSON file name (default: from options)")
    args = parse_bench_args(parser, repeats=(2, 30), inner=(2, 20))
    device = args.device
    dtype = getattr(torch, args.dtype)
    path = [int(x) for x in args.path.split(",")]
    grads, ops_of = nb201_path_grads(path, device, dtype, width=args.width)
    numel = sum(g.numel() for g in grads)
    gi = torch.tensor(ops_of, dtype=torch.int64)
    gi_dev = gi.to(device)
    per_tensor = torch.arange(len(grads), dtype=torch.int64)

    # The same gradients as views into one flat buffer, as DDP buckets keep them.
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat32 = flat.float()  # the floor reads float32 whatever the gradients' dtype
    offsets = torch.tensor([0] + [g.numel() for g in grads], dtype=torch.int64).cumsum(0)
    table = torch.zeros(NUM_OPS, dtype=torch.float32, device=device)

    def authors_loop():
        # One host sync per tensor, then a Python sum per op.
        out = [0.0] * NUM_OPS
        for g, op in zip(grads, ops_of):
            out[op] += g.norm().item()
        return out

    def foreach_grouped():
        norms = torch._foreach_norm(grads)
        sq = torch.zeros(NUM_OPS, dtype=torch.float32, device=device)
        return sq.index_add_(0, gi_dev, torch.stack(norms).float().square()).sqrt()

    cases = [
        ("authors: loop of norm().item()", authors_loop),
        ("torch._foreach_norm + index_add", foreach_grouped),
        ("ops.grouped_grad_norm", lambda: ops.grouped_grad_norm(grads, gi, NUM_OPS)),
        (
            "torch.ops.pada.grouped_grad_norm",
            lambda: torch.ops.pada.grouped_grad_norm(grads, gi, NUM_OPS, False),
        ),
        (
            "ops.grouped_sq_norm_accumulate_",
            lambda: ops.grouped_sq_norm_accumulate_(grads, gi, table),
        ),
        (
            "ops.grouped_grad_norm, per tensor",
            lambda: ops.grouped_grad_norm(grads, per_tensor, len(grads)),
        ),
        (
            "ops.segment_grad_norm (flat buffer)",
            lambda: ops.segment_grad_norm(flat, offsets, gi, NUM_OPS),
        ),
        ("floor: torch.dot(flat, flat), float32", lambda: torch.dot(flat32, flat32)),
    ]
    if is_cuda(device) and _dispatch.triton_available():
        cases.insert(
            3,
            (
                "ops.grouped_grad_norm, triton",
                lambda: ops.grouped_grad_norm(grads, gi, NUM_OPS, backend="triton"),
            ),
        )

    ms = interleaved_best(cases, device, args.repeats, args.inner)
    results = {name: t * 1e3 for name, t in ms.items()}  # us
    floor = results[cases[-1][0]]
    ours = results["ops.grouped_grad_norm"]

    print(
        f"{len(grads)} tensors, {numel} elements, {args.dtype}, {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"{'method':42s} {'us/call':>10s} {'vs ours':>8s} {'vs floor':>9s}")
    for name, us in results.items():
        print(f"{name:42s} {us:10.1f} {us / ours:8.2f} {us / floor:9.2f}")

    name = args.name or f"grouped_grad_norm_{device.type}_{args.dtype}_{args.threads}t"
    if args.width != 1 and args.name is None:
        name += f"_w{args.width}"
    record = {
        "benchmark": "grouped_grad_norm",
        "machine": machine_info(device),
        "dtype": args.dtype,
        "num_tensors": len(grads),
        "numel": numel,
        "path": path,
        "width": args.width,
        "quick": args.quick,
        "repeats": args.repeats,
        "inner": args.inner,
        "us_per_call": results,
        "speedup_vs_authors": results[cases[0][0]] / ours,
        "speedup_vs_foreach": results[cases[1][0]] / ours,
        "ratio_to_floor": ours / floor,
    }
    print(f"wrote {write_json(name, record)}")


if __name__ == "__main__":
    main()
