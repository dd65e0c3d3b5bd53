"""Shared test set-up.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors:
TRITON_INTERPRET must be set before any kernel is defined, hence here.

Devices and backends: tests take `device` from DEVICES (cpu, and cuda when a
GPU is visible) and (device, backend) pairs from BACKEND_DEVICES. Every test
that runs on CUDA gets the `cuda` marker (added at collection), so that
`pytest -m cuda` runs exactly the GPU tests (tools/gpu_check.sh does).
"""

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
# Inductor's on-disk cache does not key on a custom op's fake kernel: after a
# change of an op's output shapes it would replay stale code. A fresh cache per run.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="pada-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], True)
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pada_ext  # noqa: E402,F401  (registers the operators)

# The end-to-end package (python/pada_nas) is tested from the source tree.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
)

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])


def triton_usable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return HAS_CUDA or os.environ.get("TRITON_INTERPRET") == "1"


def triton_device() -> str:
    """Where Triton kernels run in this session: the GPU, or CPU tensors when interpreted."""
    return "cuda" if HAS_CUDA else "cpu"


def triton_selected(*ops):
    """Inside the block the pada:: `ops` run their Triton kernel on triton_device()
    (registered over the compiled kernel, which is back afterwards)."""
    from pada_ext import _triton_kernels

    return _triton_kernels.selected(ops, triton_device())


class TritonOp:
    """torch.ops.pada.<name>, each call with its Triton kernel selected for the
    device of its first tensor argument; `.default` is the op's overload."""

    def __init__(self, name):
        self.name = name
        self.default = getattr(torch.ops.pada, name).default

    def __call__(self, *args):
        from pada_ext import _triton_kernels

        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        return _triton_kernels.call(self.name, device, *args)


requires_triton = pytest.mark.skipif(not triton_usable(), reason="triton is not installed")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
requires_two_gpus = pytest.mark.skipif(
    not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"
)

# (device, backend) pairs that this session can run: the compiled kernels on
# every device, Triton on the GPU (or on CPU tensors when interpreted).
BACKEND_DEVICES = [pytest.param("cpu", "native", id="cpu-native")]
if HAS_CUDA:
    BACKEND_DEVICES.append(pytest.param("cuda", "native", id="cuda-native"))
BACKEND_DEVICES.append(
    pytest.param(triton_device(), "triton", id=f"{triton_device()}-triton", marks=requires_triton)
)

# The backends of a test that runs on a CUDA GPU only: each needs one (and has
# the cuda marker), Triton also needs Triton.
GPU_TEST_BACKENDS = [
    pytest.param("native", marks=[requires_cuda, pytest.mark.cuda]),
    pytest.param("triton", marks=[requires_cuda, pytest.mark.cuda, requires_triton]),
]

# (device, backend, torch.compile backend): inductor on the GPU; on the CPU
# aot_eager, which needs no C++ compiler (Triton on CPU only when interpreted).
COMPILE_CASES = [pytest.param("cpu", "native", "aot_eager", id="cpu-native-aot_eager")]
if not HAS_CUDA:
    COMPILE_CASES.append(
        pytest.param("cpu", "triton", "aot_eager", id="cpu-triton-aot_eager", marks=requires_triton)
    )
else:
    COMPILE_CASES += [
        pytest.param("cuda", "native", "inductor", id="cuda-native-inductor"),
        pytest.param(
            "cuda", "triton", "inductor", id="cuda-triton-inductor", marks=requires_triton
        ),
    ]


def _runs_on_cuda(item, has_cuda: bool = HAS_CUDA) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for value in callspec.params.values():
            if value == "cuda" or (isinstance(value, torch.device) and value.type == "cuda"):
                return True
    # A Triton test runs on triton_device(): the GPU wherever there is one.
    if has_cuda and item.get_closest_marker("triton") is not None:
        return True
    return item.get_closest_marker("cuda") is not None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _runs_on_cuda(item):
            item.add_marker(pytest.mark.cuda)


@contextlib.contextmanager
def no_sync(device):
    """Raises on any host synchronisation inside the block when `device` is CUDA."""
    if torch.device(device).type != "cuda":
        yield
        return
    torch.cuda.synchronize()
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine each
    parallel region can wait milliseconds for the second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def child_env(**extra) -> dict:
    """The environment of a child Python process that imports the pada_ext under
    test (the installed package, or the in-place build), plus `extra`."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(pada_ext.__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
    return env


def run_python(*args, timeout=None, interpret_triton=True):
    """`python *args` in a child process (see child_env), its output captured.
    interpret_triton=False compiles Triton kernels for real there: the
    interpreter is chosen per process, and this one may have it."""
    env = child_env()
    if not interpret_triton:
        env.pop("TRITON_INTERPRET", None)
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def importance_update_args(**changes):
    """Valid keyword arguments of importance_update_ (fresh tensors), with `changes`."""
    args = {
        "scores": torch.zeros(5),
        "visited": torch.zeros(5, dtype=torch.bool),
        "status": torch.zeros(2, dtype=torch.int64),
        "index": torch.tensor([0, 1, 2]),
        "values": torch.ones(3),
        "decay": 0.5,
    }
    args.update(changes)
    return args
