"""Argument checks of sample_with_replacement: one set of rules, so the same
bad input raises the same exception with the same message on every backend
(compiled, Triton, reference) and in the fake kernel; the wrapper names the
argument for what the op cannot take (int64 overflow, floats, bools, a
generator that is not one, lists for tensors)."""

import re

import pytest
import torch
from conftest import DEVICES, HAS_CUDA, TritonOp, triton_usable
from torch._subclasses.fake_tensor import FakeTensorMode

from pada_ext import ops


def _backends(device):
    out = ["native", "reference"]
    if triton_usable() and (device == "cuda" or not HAS_CUDA):
        out.append("triton")
    return out


BAD = [
    ("2d", lambda d: torch.ones(2, 3, device=d), 3),
    ("0d", lambda d: torch.tensor(1.0, device=d), 3),
    ("empty", lambda d: torch.ones(0, device=d), 3),
    ("float16", lambda d: torch.ones(4, device=d, dtype=torch.float16), 3),
    ("int64", lambda d: torch.ones(4, device=d, dtype=torch.int64), 3),
    ("negative", lambda d: torch.tensor([1.0, -1.5, 2.0], device=d), 3),
    ("nan", lambda d: torch.tensor([1.0, 2.0, float("nan")], device=d), 3),
    ("inf", lambda d: torch.tensor([float("inf"), 1.0], device=d, dtype=torch.float64), 3),
    ("-inf", lambda d: torch.tensor([1.0, float("-inf")], device=d), 3),
    ("zeros", lambda d: torch.zeros(5, device=d), 3),
    ("overflow", lambda d: torch.tensor([1e308, 1e308], device=d, dtype=torch.float64), 3),
    ("tiny_negative", lambda d: torch.tensor([1.0, -1e-300], device=d, dtype=torch.float64), 3),
    ("negative_num_samples", lambda d: torch.ones(3, device=d), -1),
]


@pytest.mark.parametrize("case_id,weights,num_samples", BAD, ids=[c[0] for c in BAD])
@pytest.mark.parametrize("device", DEVICES)
def test_same_error_on_every_backend(device, case_id, weights, num_samples):
    got = {}
    for backend in _backends(device):
        with pytest.raises(Exception) as e:
            ops.sample_with_replacement(weights(device), num_samples, backend=backend)
        got[backend] = (e.type, str(e.value))
    want = got["native"]
    assert want[0] in (TypeError, ValueError)
    for backend, outcome in got.items():
        assert outcome == want, f"{case_id}: {backend} {outcome} != native {want}"


def test_messages_spelled_out():
    with pytest.raises(
        ValueError, match=r"^sample_with_replacement: weights must be 1-D, got shape \[2, 3\]$"
    ):
        ops.sample_with_replacement(torch.ones(2, 3), 3)
    with pytest.raises(TypeError, match=r"float32 or float64, got torch\.float16$"):
        ops.sample_with_replacement(torch.ones(3).half(), 3)
    with pytest.raises(
        ValueError, match=r"weights\[1\] is negative \(-1\.5\); weights must be finite"
    ):
        ops.sample_with_replacement(torch.tensor([1.0, -1.5]), 3, backend="reference")


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_wrapper_argument_errors(backend):
    w = torch.ones(3)
    s = ops.sample_with_replacement
    with pytest.raises(ValueError, match="num_samples = 9223372036854775808 does not fit in int64"):
        s(w, 2**63, backend=backend)
    with pytest.raises(ValueError, match="num_samples = -9223372036854775809 does not fit"):
        s(w, -(2**63) - 1, backend=backend)
    for bad in (3.0, 2.5, True, False, "3", None, torch.tensor(3)):
        with pytest.raises(TypeError, match=re.escape(f"num_samples must be an int, got {bad!r}")):
            s(w, bad, backend=backend)
    for bad in (7, "cpu", torch.device("cpu"), torch.manual_seed):
        with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got"):
            s(w, 3, generator=bad, backend=backend)
    with pytest.raises(TypeError, match="weights must be a Tensor, got list"):
        s([1.0, 2.0], 3, backend=backend)
    # Accepted: numpy ints, 0 samples, an explicit generator.
    np = pytest.importorskip("numpy")
    assert s(w, np.int64(4), backend=backend).shape == (4,)
    assert s(w, 0, backend=backend).shape == (0,)
    gen = torch.Generator().manual_seed(1)
    assert s(w, 5, generator=gen, backend=backend).shape == (5,)


def _raw_cases(op):
    seed = lambda: torch.tensor([1], dtype=torch.int64)  # noqa: E731
    yield "2d", lambda: op(torch.ones(2, 2), 3, seed())
    yield "empty", lambda: op(torch.ones(0), 3, seed())
    yield "dtype", lambda: op(torch.ones(3, dtype=torch.float16), 3, seed())
    yield "num_samples", lambda: op(torch.ones(3), -4, seed())
    yield "seed_shape", lambda: op(torch.ones(3), 3, torch.tensor([1, 2]))
    yield "seed_dtype", lambda: op(torch.ones(3), 3, torch.tensor([1.0]))
    yield "seed_device", lambda: op(torch.ones(3), 3, torch.tensor([1], device="meta"))


def _raw_ops():
    out = [torch.ops.pada.sample_with_replacement]
    if triton_usable():  # the same op with its Triton kernel
        out.append(TritonOp("sample_with_replacement"))
    return out


RAW_IDS = [c for c, _ in _raw_cases(None)]


@pytest.mark.parametrize("case_id", RAW_IDS)
def test_raw_and_fake_kernels_raise_alike(case_id):
    # The compiled kernel, the Triton one (eager where it can run) and the fake.
    want = None
    for op in _raw_ops():
        call = dict(_raw_cases(op))[case_id]
        modes = [] if case_id == "seed_device" else [FakeTensorMode]  # a meta tensor stays real
        if op is torch.ops.pada.sample_with_replacement or not HAS_CUDA:
            modes.append(None)
        for mode in modes:
            with pytest.raises(Exception) as e:
                if mode is None:
                    call()
                else:
                    with mode():
                        call()
            got = (e.type, str(e.value))
            want = want or got
            assert got == want, f"{op} (fake: {mode is not None}): {got} != {want}"
    assert want[0] in (TypeError, ValueError, RuntimeError)
