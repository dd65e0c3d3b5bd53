"""Every CPU instruction-set variant against the others. PADA_CPU_ISA caps the
kernels' choice for a whole process (csrc/cpu/isa.h), so each variant runs in a
subprocess of its own: the sampler's draws must agree bit for bit, the fused
cross-entropy and the grouped norms within rounding (the vector variants
contract exp and log into FMAs and sum in other orders)."""

import subprocess
import sys

import pytest
import torch
from conftest import child_env

ISAS = ("scalar", "avx2", "avx512")

# Sampler sizes name the paths of csrc/cpu/sample_with_replacement.cpp: blocks of
# fewer than 8 slots (scalar build), one partial lane group, a full block of 4096,
# a ragged last block, more blocks than one 8-lane group; draws in whole 128-draw
# chunks and a ragged tail.
SCRIPT = r"""
import sys
import torch
from pada_ext import _C, ops

out = {"isa": _C.cpu_isa(), "swr": {}, "xent": {}}
torch.manual_seed(0)
for n in (1, 5, 8, 100, 4096, 4097, 40_000, 300_001):
    for kind in ("rand", "zeros", "spiky", "float64"):
        w = torch.rand(n, dtype=torch.float64 if kind == "float64" else torch.float32)
        if kind == "zeros":
            w[::3] = 0
            w[-1] = 0.5
        if kind == "spiky":
            w[n // 2] = 1e6
        g = torch.Generator().manual_seed(n)
        out["swr"][(n, kind)] = ops.sample_with_replacement(w, 10_007, generator=g)
for n, c in ((256, 10), (64, 1000), (33, 3000)):
    for dtype in (torch.float32, torch.bfloat16):
        for smoothing in (0.0, 0.1):
            z = (torch.randn(n, c) * 3).to(dtype).requires_grad_()
            y = torch.randint(c, (n,))
            loss, norm = ops.cross_entropy_with_grad_norm(z, y, label_smoothing=smoothing)
            loss.backward()
            out["xent"][(n, c, str(dtype), smoothing)] = (loss.detach(), norm, z.grad)
tensors = [torch.randn(s).to(d) for s in (3, 16, 17, 256, 1000, 70_000) for d in
           (torch.float32, torch.float16, torch.bfloat16)]
out["gnorm"] = ops.grouped_grad_norm(tensors, [i % 4 for i in range(len(tensors))], 4)
torch.save(out, sys.argv[1])
"""


def run_with_isa(isa, path):
    env = child_env(PADA_CPU_ISA=isa)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("isa")
    return {isa: run_with_isa(isa, d / f"{isa}.pt") for isa in ISAS}


def test_each_cap_is_honoured_up_to_the_cpu(results):
    granted = [results[isa]["isa"] for isa in ISAS]
    assert granted[0] == "scalar"
    # A cap above what the CPU has gives the CPU's best; never more than asked.
    for asked, got in zip(ISAS, granted):
        assert ISAS.index(got) <= ISAS.index(asked)
    assert granted == sorted(granted, key=ISAS.index)


@pytest.mark.parametrize("isa", ISAS[1:])
def test_sampler_draws_are_the_same_on_every_isa(results, isa):
    if results[isa]["isa"] != isa:
        pytest.skip(f"this CPU has no {isa}")
    for key, want in results["scalar"]["swr"].items():
        assert torch.equal(results[isa]["swr"][key], want), key


@pytest.mark.parametrize("isa", ISAS[1:])
def test_cross_entropy_and_norms_agree_on_every_isa(results, isa):
    if results[isa]["isa"] != isa:
        pytest.skip(f"this CPU has no {isa}")
    for key, want in results["scalar"]["xent"].items():
        for got, ref in zip(results[isa]["xent"][key], want):
            torch.testing.assert_close(got, ref, msg=lambda m, key=key: f"{key}: {m}")
    # The grouped norms' summation order is fixed (csrc/common/grouped_grad_norm.h): bit for bit.
    assert torch.equal(results[isa]["gnorm"], results["scalar"]["gnorm"])


def test_an_unknown_cap_is_an_error_naming_it(tmp_path):
    env = child_env(PADA_CPU_ISA="sse9")
    code = "from pada_ext import ops; import torch; ops.sample_with_replacement(torch.ones(3), 2)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "PADA_CPU_ISA must be scalar, avx2 or avx512, got 'sse9'" in done.stderr
