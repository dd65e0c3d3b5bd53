"""Reproducer of the fused cross-entropy's "slow mode" at 4096 x 1000.

Runs a sequence of other shapes and dtypes (C = 2..32001, bfloat16, reduction
none/sum, label smoothing), then steps of fused and F.cross_entropy forward +
backward at [4096, 1000], in several fresh processes, and prints per step the
minor page faults (getrusage) and glibc's heap (mallinfo2): in a slow process
every fused step faults in its whole gradient (~3900 pages) while the heap
grows by 16 MB a step and its free holes pile up. The cause: torch's CPU
allocator takes memory with posix_memalign, which in glibc < 2.38 asks for
n + 96 bytes and returns the slack, so a freed n-byte block between live blocks
never serves the next n-byte request (see empty_reusable in
csrc/cpu/cross_entropy_with_grad_norm.cpp).

    python benchmarks/repro_xent_page_faults.py [--procs 6] [--threads 1] [--no-warm]

TREE=<checkout> runs another checkout's pada_ext (a build of the commit before
the fix, to compare). Without the sequence (--no-warm) slow processes are
more frequent here: about one in two before the fix.
"""

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import time

REPO = os.environ.get("TREE") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _MallInfo2(ctypes.Structure):
    _names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in _names.split()]


def _heap():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        m = libc.mallinfo2()
        return f"heap {m.arena >> 20} MB, free {m.fordblks >> 20} MB"
    except (OSError, AttributeError):  # not glibc >= 2.33
        return ""


def child(threads, warm):
    sys.path.insert(0, REPO)
    import torch
    import torch.nn.functional as F

    from pada_ext.ops import cross_entropy_with_grad_norm as xent

    torch.set_num_threads(threads)

    def fused(x, y, **kw):
        loss, _ = xent(x, y, **kw)
        (loss.sum() if loss.dim() else loss).backward()

    def plain(x, y, **kw):
        loss = F.cross_entropy(x, y, **kw)
        (loss.sum() if loss.dim() else loss).backward()

    g = torch.Generator().manual_seed(0)
    classes = [2, 3, 10, 16, 17, 100, 128, 129, 1000, 2048, 2049, 4097, 32000, 32001]
    for c in classes if warm else []:
        for dt in [torch.float32, torch.bfloat16]:
            for kw in [{}, {"reduction": "none"}, {"reduction": "sum"}, {"label_smoothing": 0.1}]:
                n = max(1, min(4096, 8_000_000 // c))
                x = (torch.randn(n, c, generator=g) * 3).to(dt).requires_grad_()
                y = torch.randint(0, c, (n,), generator=g)
                for fn in (fused, plain):
                    x.grad = None
                    fn(x, y, **kw)
    x = (torch.randn(4096, 1000, generator=g) * 3).requires_grad_()
    y = torch.randint(0, 1000, (4096,), generator=g)
    for name, fn in (("fused", fused), ("F.cross_entropy", plain)):
        steps = []
        for _ in range(7):
            x.grad = None
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn(x, y)
            ms = (time.perf_counter() - t0) * 1e3
            steps.append(f"{resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}:{ms:.1f}")
        print(f"  {name:>15}: faults:ms per step {' '.join(steps)}  ({_heap()})")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-warm", action="store_true", help="skip the sequence of other shapes")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.threads, not args.no_warm)
    for i in range(args.procs):
        print(f"process {i + 1}:", flush=True)
        cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
        cmd += ["--no-warm"] if args.no_warm else []
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
