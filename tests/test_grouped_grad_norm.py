"""grouped_grad_norm, grouped_sq_norm_accumulate_ and segment_grad_norm against
the _foreach_norm reference, plus determinism, opcheck, torch.compile and errors."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import requires_triton, triton_device

import pada_ext
from pada_ext import ops

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {"rtol": 2e-5, "atol": 1e-6}


def _make(sizes, dtypes, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        t = torch.randn(n, generator=gen) * (1 + i % 3)
        out.append(t.to(device=device, dtype=dtypes[i % len(dtypes)]))
    return out


def _cases():
    """(name, tensors, group_index list, num_groups)."""
    odd = [0, 1, 3, 255, 256, 257, 1000, 65535, 65536, 65537, 200_003]
    yield "one", _make([1000], DTYPES[:1]), [0], 1
    yield "one_large", _make([300_001], DTYPES[:1]), [2], 4
    yield "sizes_f32", _make(odd, DTYPES[:1]), [i % 3 for i in range(len(odd))], 3
    yield "empty_groups", _make(odd, DTYPES[:1], 1), [7 * (i % 2) for i in range(len(odd))], 9
    many = [(i * 37) % 2000 for i in range(200)]
    yield "200_tensors", _make(many, DTYPES[:1], 2), [i % 17 for i in range(200)], 20
    yield "per_tensor", _make(many, DTYPES[:1], 3), list(range(200)), 200
    for dt in DTYPES[1:]:
        yield f"sizes_{dt}", _make(odd, [dt], 4), [i % 4 for i in range(len(odd))], 4
    yield "mixed", _make(odd + many[:50], DTYPES, 5), [i % 5 for i in range(61)], 6
    base = torch.randn(64, 48, 3, 3)
    views = [
        base.permute(2, 3, 0, 1),  # dense, other order: read in place
        base[:, ::2],  # strided: copied
        base.transpose(0, 1)[5:40],
        base[3, :, 1, 1],
        base.half().permute(1, 0, 3, 2),
        base.bfloat16()[::3, 1:, :, ::2],
        base[:0],
    ]
    yield "views", views, [0, 1, 1, 2, 0, 2, 3], 4


CASES = list(_cases())


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(case, squared):
    _, tensors, groups, g = case
    got = ops.grouped_grad_norm(tensors, groups, g, squared=squared)
    want = ops.grouped_grad_norm(tensors, groups, g, squared=squared, backend="reference")
    assert got.dtype == torch.float32 and got.shape == (g,)
    torch.testing.assert_close(got, want, **TOL)


def test_empty_list_and_groups():
    assert torch.equal(ops.grouped_grad_norm([], [], 3), torch.zeros(3))
    assert ops.grouped_grad_norm([], torch.zeros(0, dtype=torch.int64), 0).shape == (0,)
    out = ops.grouped_grad_norm([torch.ones(4), torch.ones(0)], [1, 0], 3)
    assert torch.equal(out, torch.tensor([0.0, 2.0, 0.0]))


def test_accumulate():
    _, tensors, groups, g = CASES[2]
    table = torch.full((g,), 0.5)
    ops.grouped_sq_norm_accumulate_(tensors, groups, table)
    ops.grouped_sq_norm_accumulate_(tensors, torch.tensor(groups), table)
    want = 0.5 + 2 * ops.grouped_grad_norm(tensors, groups, g, squared=True, backend="reference")
    torch.testing.assert_close(table, want, **TOL)
    ref = torch.full((g,), 0.5)
    ops.grouped_sq_norm_accumulate_(tensors, groups, ref, backend="reference")
    ops.grouped_sq_norm_accumulate_(tensors, groups, ref, backend="reference")
    torch.testing.assert_close(table, ref, **TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_segments(dtype):
    sizes = [0, 5, 70_000, 1, 300, 0, 131_072]
    flat = torch.randn(sum(sizes) + 7).to(dtype)
    offsets = torch.tensor([3] + sizes).cumsum(0)
    groups = [2, 0, 1, 1, 0, 3, 2]
    for squared in (False, True):
        got = ops.segment_grad_norm(flat, offsets, groups, 5, squared=squared)
        want = ops.segment_grad_norm(flat, offsets, groups, 5, squared=squared, backend="reference")
        torch.testing.assert_close(got, want, **TOL)
    # The same numbers as the tensor-list op over the same pieces, to the bit.
    pieces = [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    assert torch.equal(
        ops.segment_grad_norm(flat, offsets, groups, 5), ops.grouped_grad_norm(pieces, groups, 5)
    )


def _tree(lanes):
    for s in (128, 64, 32, 16, 8, 4, 2, 1):
        lanes = lanes[:s] + lanes[s : 2 * s]
    return lanes[0]


def _contract_order(tensors, groups, num_groups):
    """The summation order fixed in csrc/common/grouped_grad_norm.h, step by step."""
    partials = [[] for _ in range(num_groups)]
    for t, g in zip(tensors, groups):
        x = t.reshape(-1).float()
        for c in range(0, x.numel(), 1 << 16):
            chunk = x[c : c + (1 << 16)]
            pad = torch.zeros(-chunk.numel() % 256)
            rows = torch.cat([chunk, pad]).reshape(-1, 256)
            lanes = torch.zeros(256)
            for row in rows:  # float32 multiply, then float32 add: no FMA
                lanes = lanes + row * row
            partials[g].append(_tree(lanes))
    out = []
    for p in partials:  # <= 256 chunks per group here: lane c holds chunk c
        lanes = torch.zeros(256, dtype=torch.float64)
        lanes[: len(p)] = torch.tensor([float(v) for v in p], dtype=torch.float64)
        out.append(_tree(lanes).float())
    return torch.stack(out)


def test_bits_follow_the_documented_order():
    # The CUDA kernel implements the same order; this pins the CPU kernel to it.
    tensors = _make([1, 255, 256, 1000, 65_537, 70_001], DTYPES, 12)
    groups = [1, 0, 1, 2, 1, 0]
    got = ops.grouped_grad_norm(tensors, groups, 4, squared=True)
    assert torch.equal(got, _contract_order(tensors, groups, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_finite_16_bit_value(dtype):
    # One-element segments take the portable scalar conversion (the F16C one is the CPU's).
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype)
    x = x[torch.isfinite(x)]
    want = x.float().square()
    n = x.numel()
    got = ops.segment_grad_norm(x, torch.arange(n + 1), torch.arange(n), n, squared=True)
    assert torch.equal(got, want)


def test_deterministic_across_threads():
    tensors = _make([70_000 + 13 * i for i in range(12)], DTYPES, 7)
    groups = [i % 3 for i in range(12)]
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(ops.grouped_grad_norm(tensors, groups, 3, squared=True))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1])


def test_opcheck():
    tensors = _make([0, 3, 300, 70_000], DTYPES, 8)
    gi = torch.tensor([0, 1, 1, 2])
    torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 3, False))
    torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 4, True))
    torch.library.opcheck(
        torch.ops.pada.grouped_sq_norm_accumulate_.default, (tensors, gi, torch.zeros(3))
    )
    flat = torch.randn(1000)
    torch.library.opcheck(
        torch.ops.pada.segment_grad_norm.default,
        (flat, torch.tensor([0, 10, 10, 999]), torch.tensor([1, 0, 1]), 2, False),
    )


def test_torch_compile_fullgraph():
    tensors = _make([10, 300, 70_000], DTYPES, 9)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(ts):
        table = torch.zeros(3)
        ops.grouped_sq_norm_accumulate_(ts, [0, 2, 2], table)
        return ops.grouped_grad_norm(ts, [0, 1, 1], 2) * 2, table

    got, table = f(tensors)
    torch.testing.assert_close(got, 2 * ops.grouped_grad_norm(tensors, [0, 1, 1], 2))
    torch.testing.assert_close(table, ops.grouped_grad_norm(tensors, [0, 2, 2], 3, squared=True))


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_errors(backend):
    ts = [torch.randn(3), torch.randn(4)]
    with pytest.raises(IndexError, match=r"group_index\[1\] = 5 \(for tensors\[1\]\)"):
        ops.grouped_grad_norm(ts, [0, 5], 3, backend=backend)
    with pytest.raises(IndexError, match=r"group_index\[0\] = -1"):
        ops.grouped_grad_norm(ts, [-1, 0], 3, backend=backend)
    with pytest.raises(ValueError, match="2 entries"):
        ops.grouped_grad_norm(ts, [0], 3, backend=backend)
    with pytest.raises(ValueError, match="num_groups must be >= 0"):
        ops.grouped_grad_norm(ts, [0, 0], -1, backend=backend)
    with pytest.raises(TypeError, match=r"tensors\[1\] has dtype"):
        ops.grouped_grad_norm([ts[0], ts[1].double()], [0, 0], 1, backend=backend)
    with pytest.raises(TypeError, match="int64"):
        ops.grouped_grad_norm(ts, torch.tensor([0, 0], dtype=torch.int32), 1, backend=backend)
    with pytest.raises(RuntimeError, match=r"tensors\[1\] is on meta"):
        ops.grouped_grad_norm([ts[0], torch.empty(3, device="meta")], [0, 0], 1, backend=backend)


def test_errors_native_only():
    ts = [torch.randn(3)]
    with pytest.raises(TypeError, match="table must be float32"):
        ops.grouped_sq_norm_accumulate_(ts, [0], torch.zeros(2, dtype=torch.float64))
    with pytest.raises(IndexError, match="out of range for num_groups = 2"):
        ops.grouped_sq_norm_accumulate_(ts, [2], torch.zeros(2))
    flat = torch.randn(10)
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.segment_grad_norm(flat, [0, 5, 4], [0, 0], 1)
    with pytest.raises(IndexError, match="offsets must lie in"):
        ops.segment_grad_norm(flat, [0, 11], [0], 1)
    with pytest.raises(IndexError, match=r"group_of_segment\[0\] = 3"):
        ops.segment_grad_norm(flat, [0, 5], [3], 1)


@requires_triton
@pytest.mark.triton
@pytest.mark.parametrize("squared", [False, True])
def test_triton(squared):
    device = triton_device()
    # ~30 chunks in all: a small grid for the interpreter.
    sizes = [0, 1, 3, 255, 257, 1000, 65_537, 70_000, 5, 4096]
    tensors = _make(sizes, DTYPES, 10, device)
    tensors.append(torch.randn(40, 30, device=device).t())
    tensors.append(torch.randn(40, 30, device=device)[:, ::3])
    groups = [i % 4 for i in range(len(tensors))]
    got = ops.grouped_grad_norm(tensors, groups, 5, squared=squared, backend="triton")
    want = ops.grouped_grad_norm(tensors, groups, 5, squared=squared, backend="reference")
    torch.testing.assert_close(got, want, **TOL)
    table = torch.ones(5, device=device)
    ops.grouped_sq_norm_accumulate_(tensors, groups, table, backend="triton")
    want_sq = ops.grouped_grad_norm(tensors, groups, 5, squared=True, backend="reference")
    torch.testing.assert_close(table, 1 + want_sq, **TOL)
    assert torch.equal(ops.grouped_grad_norm([], [], 2, backend="triton"), torch.zeros(2))


@requires_triton
@pytest.mark.triton
def test_triton_opcheck():
    from pada_ext.triton import grouped_grad_norm  # noqa: F401

    device = triton_device()
    tensors = _make([0, 7, 300], DTYPES, 11, device)
    gi = torch.tensor([0, 1, 1])
    torch.library.opcheck(torch.ops.pada_triton.grouped_grad_norm.default, (tensors, gi, 2, False))
    torch.library.opcheck(
        torch.ops.pada_triton.grouped_sq_norm_accumulate_.default,
        (tensors, gi, torch.zeros(2, device=device)),
    )


@requires_triton
@pytest.mark.triton
def test_triton_aot_compiles_for_sm90():
    # Triton's interpreter is chosen per process: compile in one without it.
    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from pada_ext.triton.grouped_grad_norm import aot_specs\n"
        "for s in aot_specs():\n"
        "    src = triton.compiler.ASTSource(\n"
        "        fn=s['kernel'], signature=s['signature'], constexprs=s['constexprs'])\n"
        "    k = triton.compile(src, target=GPUTarget('cuda', 90, 32))\n"
        "    assert k.asm['cubin'], s['name']\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # The pada_ext under test: the installed package or the in-place build.
    here = os.path.dirname(os.path.dirname(os.path.abspath(pada_ext.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
