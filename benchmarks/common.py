"""Timing helpers shared by the benchmarks: min of repeats, device-aware, and
a table printer. Benchmarks compare ratios within one run: the machine is shared.

On CUDA a repeat is timed with CUDA events around the call, after a
synchronize, so it covers the host work that launches the kernels as well as
the kernels themselves; warm-up calls (Triton JIT, cuBLAS handles, the caching
allocator) run before any timed region.
"""

import argparse
import json
import os
import platform
import sys
import time

# The checkout under test comes first: the benchmarks measure this tree's
# pada_ext (and python/'s pada_nas), not whatever copy is installed elsewhere.
# Every benchmark imports this module before pada_ext.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [p for p in (REPO, os.path.join(REPO, "python")) if p not in sys.path[:2]]

import torch  # noqa: E402

# Where write_json puts results: $PADA_BENCH_RESULTS (tools/gpu_check.sh sets
# it), else benchmarks/results/.
RESULTS_ENV = "PADA_BENCH_RESULTS"


def add_device_args(parser):
    """--device (default cpu) and --quick (tiny sizes: a smoke test of the code path)."""
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:K")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few repeats: checks, not figures"
    )


def bench_parser(description, threads=2):
    """An ArgumentParser with `description` and --threads (default `threads`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=threads)
    return parser


def parse_bench_args(parser, argv=None, **defaults):
    """Adds add_device_args to `parser` and parses `argv`: --device resolved,
    torch's threads set from --threads, and each option named in `defaults`
    that was not given set from its (quick, full) pair by --quick."""
    add_device_args(parser)
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def resolve_device(name):
    """`name` as a torch.device; exits with a clear message if it cannot be used."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        sys.exit(f"--device {name!r}: {e}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(
                f"--device {name}: CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); run with --device cpu"
            )
        if device.index is not None:
            if device.index >= torch.cuda.device_count():
                sys.exit(f"--device {name}: {torch.cuda.device_count()} CUDA device(s) visible")
            torch.cuda.set_device(device.index)  # events and synchronize() follow it
        device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        sys.exit(f"--device {name}: the benchmarks run on cpu or cuda")
    return device


def is_cuda(device):
    return torch.device(device).type == "cuda"


def sync(device):
    if is_cuda(device):
        torch.cuda.synchronize(device)


def best_time(fn, repeats, device="cpu", warmup=1):
    """Minimum time of `fn()` over `repeats` runs, in milliseconds.

    CPU: wall time. CUDA: CUDA events recorded around each call on an idle
    stream (at least 2 warm-up calls, so that JIT compilation is never timed).
    """
    for _ in range(max(warmup, 2) if is_cuda(device) else warmup):
        fn()
    return min(time_once(fn, device) for _ in range(repeats))


def time_once(fn, device):
    """Time of one call of `fn()` in milliseconds, starting from an idle device."""
    if not is_cuda(device):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def interleaved_best(cases, device, repeats, inner, warmup=3):
    """Per case, the min over `repeats` of the mean time of `inner` back-to-back calls, in ms.

    `cases` is a list of (name, fn). Round robin over the cases, so that load
    from other processes on a shared machine hits them all alike; each timing
    follows `warmup` untimed calls of the same case, so that none pays for the
    state (idle threads, caches) that the previous case left.
    """
    best = {name: float("inf") for name, _ in cases}
    for _ in range(repeats):
        for name, fn in cases:
            for _ in range(warmup):
                fn()
            best[name] = min(best[name], time_once(lambda f=fn: _calls(f, inner), device) / inner)
    return best


def _calls(fn, n):
    for _ in range(n):
        fn()


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or fails to import: recorded as absent
        return None


def _origin(module):
    try:
        return os.path.dirname(os.path.abspath(__import__(module).__file__))
    except Exception:  # not importable: recorded as absent
        return None


def machine_info(device):
    device = torch.device(device)
    info = {
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": _version("numpy"),
        "pada_ext": _version("pada_ext"),
        "pada_ext_path": _origin("pada_ext"),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            pada_cuda_kernels=_has_cuda_kernels(),
        )
    return info


def _has_cuda_kernels():
    """Whether this build of pada_ext has compiled CUDA kernels (else Triton serves CUDA)."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(
            "pada::sample_with_replacement", "CUDA"
        )
    except Exception:
        return None


def result_name(base, device):
    """JSON file name: `base` on CPU (as before), `base_cuda` on a GPU."""
    return base if torch.device(device).type == "cpu" else f"{base}_{torch.device(device).type}"


def print_table(headers, rows):
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, r in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")
        if j == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def save_results(base, device, **payload):
    """Writes {"machine": machine_info(device), **payload} as result_name(base,
    device) (see write_json) and prints where."""
    path = write_json(result_name(base, device), {"machine": machine_info(device), **payload})
    print(f"wrote {path}")


def write_json(name, payload):
    out_dir = os.environ.get(RESULTS_ENV) or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"
    )
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path
