"""Per-step cost of path importance bookkeeping on a NAS-Bench-201 supernet
(C = 16, 5 cells per stage, 5 ops per edge: the authors' setup), after a real
backward pass on a path of three nor_conv_3x3 and three nor_conv_1x1 edges:

* authors: one norm and one .item() per conv weight and bias of each edge on
  the path, grouped per op in Python, averaged into the op scores;
* foreach: torch._foreach_norm over the same gradients, grouped with index_add;
* pada_ext: PathSampler.record(path) (fused grouped norm, scores updated on
  the device, no host sync), in the authors' configuration, the default one,
  and the default one with flat_grads=True (gradients as views of one buffer);
* floor: torch.dot(flat, flat) over one buffer with as many elements.

    python benchmarks/bench_path_sampler.py [--threads 2] [--device cpu]
        [--quick]
"""

import argparse

import torch
from common import (
    add_device_args,
    best_time,
    machine_info,
    print_table,
    resolve_device,
    result_name,
    write_json,
)
from pada_nas.nb201 import CONV_OPS, Supernet

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, help="default 30 (--quick: 2)")
    ap.add_argument("--inner", type=int, help="calls per timed repeat (default 20, --quick: 2)")
    add_device_args(ap)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 30
    if args.inner is None:
        args.inner = 2 if args.quick else 20
    torch.set_num_threads(args.threads)
    dev = args.device = resolve_device(args.device)
    torch.manual_seed(0)
    model = Supernet(channels=16, cells=5).to(dev)
    x = torch.randn(8, 3, 32, 32, device=dev)
    y = torch.randint(10, (8,), device=dev)
    torch.nn.functional.cross_entropy(model(x, PATH), y).backward()

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
    # Interleave the cases over a few rounds: the machine is shared and noisy.
    us = {name: float("inf") for name in cases}
    for _ in range(3):
        for name, fn in cases.items():
            us[name] = min(us[name], repeat(fn))
    ours = us["PathSampler.paper(...).record"]
    floor = us["floor: torch.dot(flat, flat)"]
    print(
        f"PathSampler.record on NB201 (C=16, 5 cells/stage): {len(grads)} gradient tensors, "
        f"{numel} elements, {args.device}, {torch.get_num_threads()} threads; us per step"
    )
    print_table(
        ["method", "us", "vs PathSampler.paper", "vs floor"],
        [[k, f"{v:.1f}", f"{v / ours:.2f}x", f"{v / floor:.2f}x"] for k, v in us.items()],
    )
    a, f = us["authors: norm().item() loop"], us["torch._foreach_norm + index_add"]
    print(
        f"record (authors' config) is {a / ours:.1f}x faster than the authors' loop (goal >= 10x), "
        f"{f / ours:.1f}x faster than _foreach_norm + grouping (goal >= 1.5x), "
        f"{ours / floor:.1f}x the floor"
    )
    path = write_json(
        result_name("path_sampler", dev),
        {
            "machine": machine_info(dev),
            "quick": args.quick,
            "tensors": len(grads),
            "elements": numel,
            "us": us,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
