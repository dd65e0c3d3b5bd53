"""Asserts that the installed pada_ext has a kernel for every pada:: op.

    python tools/check_kernels.py          # CPU kernels
    python tools/check_kernels.py --cuda   # CPU and CUDA kernels (a CUDA build)

Run it from outside the source tree to check the installed package (the
source folder would shadow it). Prints each op and where it came from;
exits 1 naming the ops without a kernel.
"""

import argparse
import sys

import torch


def pada_ops():
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pada::"))


def missing(keys):
    return [
        (op, key)
        for op in pada_ops()
        for key in keys
        if not torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="also require CUDA kernels")
    args = parser.parse_args(argv)
    import pada_ext

    keys = ["CPU"] + (["CUDA"] if args.cuda else [])
    ops = pada_ops()
    print(f"pada_ext {pada_ext.__version__} from {pada_ext.__file__}, torch {torch.__version__}")
    if not ops:
        print("no pada:: ops registered")
        return 1
    gaps = missing(keys)
    for op in ops:
        have = [k for k in keys if (op, k) not in gaps]
        print(f"  {op}: {', '.join(have) or 'none'}")
    if gaps:
        for op, key in gaps:
            print(f"MISSING: {op} has no {key} kernel", file=sys.stderr)
        return 1
    print(f"{len(ops)} ops, each with a kernel for {' and '.join(keys)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
