"""Backend choice and seeding shared by the public functions in pada_ext.ops."""

import functools
import importlib
import os

import torch

BACKENDS = ("native", "triton", "reference")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _has_native_kernel(op: str, dispatch_key: str) -> bool:
    from . import _triton_kernels  # it imports this module

    if _triton_kernels.serves(op, dispatch_key):  # Triton stands in for a missing kernel
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"pada::{op}", dispatch_key)


# Dynamo cannot trace the dispatcher query (a graph break under fullgraph=True,
# e.g. any CUDA call with backend=None): it is a constant of the build.
_constant = getattr(getattr(torch, "compiler", None), "assume_constant_result", lambda f: f)


@_constant
def has_native_kernel(op: str, dispatch_key: str) -> bool:
    return _has_native_kernel(op, dispatch_key)


def compiling() -> bool:
    """Whether torch.compile is tracing (no data-dependent Python branches then)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", lambda: False)())


def resolve_backend(op: str, backend, device: torch.device) -> str:
    """The backend that serves `op` on `device`: `backend` if given, else the best one.

    "native" is the compiled kernel, "triton" the Triton kernel of the same pada::
    op (pada_ext/_triton_kernels.py), "reference" plain PyTorch.
    """
    if backend is None:
        if device.type == "cpu":
            return "native"
        if device.type == "cuda":
            if has_native_kernel(op, "CUDA"):
                return "native"
            if triton_available():
                return "triton"
        raise RuntimeError(
            f"pada_ext.ops.{op}: no kernel for {device.type} tensors in this build "
            "(built without CUDA and triton is not installed)"
        )
    if backend not in BACKENDS:
        raise ValueError(
            f"pada_ext.ops.{op}: backend must be one of {BACKENDS} or None, got {backend!r}"
        )
    if backend == "native":
        key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
        if key is None or not has_native_kernel(op, key):
            raise RuntimeError(f"pada_ext.ops.{op}: no compiled kernel for {device.type} tensors")
    if backend == "triton":
        if not triton_available():
            raise RuntimeError(f"pada_ext.ops.{op}: backend='triton' needs the triton package")
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpreted()):
            raise RuntimeError(
                f"pada_ext.ops.{op}: backend='triton' runs on CUDA tensors, or on CPU "
                "tensors under TRITON_INTERPRET=1"
            )
    return backend


def draw_seed(generator, device: torch.device) -> torch.Tensor:
    """A one-element int64 seed drawn from `generator` (default: the device's), on `device`.

    No host synchronisation: the seed stays on the device that produced it.
    """
    gen_device = generator.device if generator is not None else device
    seed = torch.randint(
        -(2**63), 2**63 - 1, (1,), dtype=torch.int64, device=gen_device, generator=generator
    )
    return seed.to(device)
