"""Per-step cost of path importance bookkeeping on a NAS-Bench-201 supernet
(C = 16, 5 cells per stage, 5 ops per edge: the authors' setup).

Every conv op of every cell holds a gradient from real backward passes; the
paths are then drawn uniformly over all 5^6 = 15,625 (seeded), as a run draws
them early on, and each case records the same sequence:

* authors: one norm and one .item() per conv weight and bias of each edge on
  the path, grouped per op in Python, averaged into the op scores;
* pada_ext: PathSampler.record(path) (fused grouped norm, scores updated on
  the device, no host sync), in the authors' configuration and the default
  one (list mode: the gradients as the optimizer keeps them);
* floor: torch.dot(v, v) over as many elements as the path's gradients,
  views that move through a buffer as large as all candidate ops' gradients
  (so that as much memory is in play as for the gradients).

The sequence is longer than any cache of per-path work, and is cut into
short chunks: each case's time is the sum over chunks of its best time over
the rounds (the cases interleaved chunk by chunk, as the machine is shared;
on a loaded machine, 2 threads stall in every parallel region: compare
--threads 1 there).
A second table times one repeated path (three nor_conv_3x3 and three
nor_conv_1x1 edges), the earlier figure, with torch._foreach_norm + index_add
and flat_grads=True besides.

    python benchmarks/bench_path_sampler.py [--threads 2] [--device cpu]
        [--paths 8192] [--chunk 64] [--rounds 3] [--quick]
"""

import torch
from common import (
    bench_parser,
    best_time,
    parse_bench_args,
    print_table,
    save_results,
    sync,
    time_once,
)
from pada_nas.nb201 import CONV_OPS, NUM_EDGES, OPS, Supernet

from pada_ext import PathSampler

PATH = [3, 2, 3, 2, 3, 2]


def authors_record(model, path, scores):
    per_op = [0.0] * 5
    for cell in model.cells:
        for k, op in enumerate(path):
            if op in CONV_OPS:
                conv = cell.edges[k][op][1]
                per_op[op] += conv.weight.grad.norm().item()
                per_op[op] += conv.bias.grad.norm().item()
    for op in range(5):
        if per_op[op] != 0.0:
            scores[op] = (scores[op] + per_op[op] / path.count(op)) / 2
    return scores


def foreach_record(grads, op_of_grad, uses, scores):
    norms = torch.stack(torch._foreach_norm(grads))
    step = torch.zeros(5, device=norms.device).index_add_(0, op_of_grad, norms) / uses
    return torch.where(step != 0, (scores + step) / 2, scores)


def path_numel(model, path):
    return sum(
        p.numel()
        for cell in model.cells
        for k, op in enumerate(path)
        for p in cell.edges[k][op].parameters()
    )


def uniform_table(args, model, dev):
    """Us per step of each case over one seeded uniform sequence of paths."""
    g = torch.Generator().manual_seed(args.seed)
    seq = torch.randint(len(OPS), (args.paths, NUM_EDGES), generator=g).tolist()
    numels = [path_numel(model, p) for p in seq]
    # The floor reads as many elements as each path's gradients, from a buffer
    # as large as all of them, at offsets that move on as the paths do: the
    # same amount of memory in play as the gradients (a view of one small
    # buffer would stay in cache, which the gradients of 15,625 paths do not).
    total = sum(p.numel() for e in model.decisions() for inst in e for p in inst.parameters())
    flat = torch.randn(total, device=dev)
    views, offset = [], 0
    for n in numels:
        offset = 0 if offset + n > total else offset
        views.append(flat[offset : offset + n])
        offset += n
    paper = PathSampler.paper(model.decisions(), epochs=10, seed=0)
    default = PathSampler(model.decisions(), delta=0.5, seed=0)
    scores_py = [0.0] * 5

    def over(fn, items):
        def run():
            for item in items:
                fn(item)

        return run

    chunks = [slice(i, i + args.chunk) for i in range(0, len(seq), args.chunk)]
    cases = {
        "authors: norm().item() loop": lambda c: over(
            lambda p: authors_record(model, p, scores_py), seq[c]
        ),
        "PathSampler.paper(...).record": lambda c: over(paper.record, seq[c]),
        "PathSampler(...).record (l2, ema)": lambda c: over(default.record, seq[c]),
        "floor: torch.dot(v, v)": lambda c: over(lambda v: torch.dot(v, v), views[c]),
    }
    for fn in cases.values():  # warm up (one-time setup) off the clock
        fn(slice(0, 8))()
    sync(dev)
    best = {name: [float("inf")] * len(chunks) for name in cases}
    for _ in range(args.rounds):
        for i, c in enumerate(chunks):
            for name, fn in cases.items():
                best[name][i] = min(best[name][i], time_once(fn(c), dev))
    us = {name: sum(t) * 1e3 / len(seq) for name, t in best.items()}
    return us, {"paths": len(seq), "mean_elements": sum(numels) / len(seq)}


def cached_table(args, model, dev):
    """Us per step on one repeated path (the earlier figure)."""
    convs = [(cell.edges[k][op][1], op) for cell in model.cells for k, op in enumerate(PATH)]
    grads = [g for conv, _ in convs for g in (conv.weight.grad, conv.bias.grad)]
    op_of_grad = torch.tensor([op for _, op in convs for _ in range(2)], device=dev)
    uses = torch.tensor([max(PATH.count(j), 1) for j in range(5)], dtype=torch.float32, device=dev)
    numel = sum(g.numel() for g in grads)
    flat = torch.randn(numel, device=dev)
    paper = PathSampler.paper(model.decisions(), epochs=10, seed=0)
    default = PathSampler(model.decisions(), delta=0.5, seed=0)
    # No torch optimizer steps these parameters here: optimizer=[] (nothing to filter).
    flat_sampler = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=True, optimizer=[])
    scores_py, scores_t = [0.0] * 5, torch.zeros(5, device=dev)

    def repeat(fn):
        def run():
            for _ in range(args.inner):
                fn()

        return best_time(run, args.repeats, args.device, warmup=2) * 1e3 / args.inner

    cases = {
        "authors: norm().item() loop": lambda: authors_record(model, PATH, scores_py),
        "torch._foreach_norm + index_add": lambda: foreach_record(
            grads, op_of_grad, uses, scores_t
        ),
        "PathSampler.paper(...).record": lambda: paper.record(PATH),
        "PathSampler(...).record (l2, ema)": lambda: default.record(PATH),
        "PathSampler(..., flat_grads=True).record": lambda: flat_sampler.record(PATH),
        "floor: torch.dot(flat, flat)": lambda: torch.dot(flat, flat),
    }
    us = {name: float("inf") for name in cases}
    for _ in range(3):
        for name, fn in cases.items():
            us[name] = min(us[name], repeat(fn))
    return us, {"tensors": len(grads), "elements": numel}


def report(us, ours_key, floor_key):
    ours, floor = us[ours_key], us[floor_key]
    print_table(
        ["method", "us", "vs PathSampler.paper", "vs floor"],
        [[k, f"{v:.1f}", f"{v / ours:.2f}x", f"{v / floor:.2f}x"] for k, v in us.items()],
    )
    a = us["authors: norm().item() loop"]
    print(
        f"record (authors' config) is {a / ours:.1f}x faster than the authors' loop "
        f"(goal >= 10x), {ours / floor:.1f}x the floor (goal <= 2x)"
    )


def main(argv=None):
    ap = bench_parser(__doc__.splitlines()[0])
    ap.add_argument(
        "--paths", type=int, help="uniform paths (default 8192, CUDA 6144, --quick: 256)"
    )
    ap.add_argument("--chunk", type=int, default=64, help="paths per timed chunk")
    ap.add_argument(
        "--rounds", type=int, help="rounds over the paths (default 3, CUDA 2, --quick: 1)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the path sequence")
    ap.add_argument("--repeats", type=int, help="cached path: default 30 (--quick: 2)")
    ap.add_argument("--inner", type=int, help="cached path: calls per repeat (default 20)")
    args = parse_bench_args(ap, argv)
    dev = args.device
    # CUDA: the authors' loop syncs per tensor (~1 ms a step): fewer paths, so
    # that tools/gpu_check.sh's budget holds (still longer than the old 4096-plan cache).
    full_paths, full_rounds = (6144, 2) if dev.type == "cuda" else (8192, 3)
    args.paths = args.paths or (256 if args.quick else full_paths)
    args.rounds = args.rounds or (1 if args.quick else full_rounds)
    args.repeats = args.repeats or (2 if args.quick else 30)
    args.inner = args.inner or (2 if args.quick else 20)
    torch.manual_seed(0)
    model = Supernet(channels=16, cells=5).to(dev)
    x = torch.randn(8, 3, 32, 32, device=dev)
    y = torch.randint(10, (8,), device=dev)
    # Real gradients on every conv op: a backward over each conv op's path.
    for op in CONV_OPS:
        torch.nn.functional.cross_entropy(model(x, [op] * NUM_EDGES), y).backward()

    uniform, useq = uniform_table(args, model, dev)
    print(
        f"PathSampler.record on NB201 (C=16, 5 cells/stage), {useq['paths']} paths drawn "
        f"uniformly (seed {args.seed}), {useq['mean_elements']:.0f} gradient elements a path "
        f"on average, {dev}, {torch.get_num_threads()} threads; us per step"
    )
    report(uniform, "PathSampler.paper(...).record", "floor: torch.dot(v, v)")
    cached, cseq = cached_table(args, model, dev)
    print(
        f"\nThe same on one repeated path {PATH}: {cseq['tensors']} gradient tensors, "
        f"{cseq['elements']} elements; us per step"
    )
    report(cached, "PathSampler.paper(...).record", "floor: torch.dot(flat, flat)")
    save_results(
        "path_sampler",
        dev,
        quick=args.quick,
        uniform={**useq, "seed": args.seed, "us": uniform},
        cached_path={**cseq, "us": cached},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
