"""grouped_grad_norm, grouped_sq_norm_accumulate_ and segment_grad_norm against
the _foreach_norm reference on every device and backend, plus bit identity
between the compiled kernels, determinism, CUDA graphs, streams, devices,
opcheck, torch.compile and errors."""

import conftest
import pytest
import torch
from conftest import BACKEND_DEVICES, COMPILE_CASES, DEVICES, GPU_TEST_BACKENDS, requires_triton

from pada_ext import ops

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {"rtol": 2e-5, "atol": 1e-6}
# Triton's interpreter costs milliseconds per program: keep its grids small.
INTERPRETED = not conftest.HAS_CUDA


def _make(sizes, dtypes, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        t = torch.randn(n, generator=gen) * (1 + i % 3)
        out.append(t.to(device=device, dtype=dtypes[i % len(dtypes)]))
    return out


def _cases(device="cpu"):
    """(name, tensors, group_index list, num_groups), built on `device`."""
    odd = [0, 1, 3, 255, 256, 257, 1000, 65535, 65536, 65537, 200_003]
    yield "one", _make([1000], DTYPES[:1], 0, device), [0], 1
    yield "one_large", _make([300_001], DTYPES[:1], 0, device), [2], 4
    yield "sizes_f32", _make(odd, DTYPES[:1], 0, device), [i % 3 for i in range(len(odd))], 3
    yield (
        "empty_groups",
        _make(odd, DTYPES[:1], 1, device),
        [7 * (i % 2) for i in range(len(odd))],
        9,
    )
    many = [(i * 37) % 2000 for i in range(200)]
    yield "200_tensors", _make(many, DTYPES[:1], 2, device), [i % 17 for i in range(200)], 20
    yield "per_tensor", _make(many, DTYPES[:1], 3, device), list(range(200)), 200
    for dt in DTYPES[1:]:
        yield f"sizes_{dt}", _make(odd, [dt], 4, device), [i % 4 for i in range(len(odd))], 4
    yield "mixed", _make(odd + many[:50], DTYPES, 5, device), [i % 5 for i in range(61)], 6
    base = torch.randn(64, 48, 3, 3, generator=torch.Generator().manual_seed(6)).to(device)
    views = [
        base.permute(2, 3, 0, 1),  # dense, other order: read in place
        base[:, ::2],  # strided: copied
        base.transpose(0, 1)[5:40],
        base[3, :, 1, 1],
        base.half().permute(1, 0, 3, 2),
        base.bfloat16()[::3, 1:, :, ::2],
        base[:0],
        base[1:2, 1:2, 1:2, 1:2],  # one element, at an odd offset
        base.half()[:, :, :, 1:].reshape(-1)[1:],  # a 16-bit tensor at an odd address
    ]
    yield "views", views, [0, 1, 1, 2, 0, 2, 3, 3, 1], 4
    # Non-finite values propagate (inf, NaN), and float32 squares overflow to inf.
    special = torch.randn(5000, generator=torch.Generator().manual_seed(7))
    special[17] = float("inf")
    nan = torch.randn(300, generator=torch.Generator().manual_seed(8))
    nan[3] = float("nan")
    big = torch.full((10,), 3e38)
    yield "non_finite", [t.to(device) for t in (special, nan, big)], [0, 1, 2], 3


CASES = list(_cases())
CASE_IDS = [c[0] for c in CASES]
BIG_GRIDS = {"200_tensors", "per_tensor"}  # hundreds of programs


def _case(name, device):
    return next(c for c in _cases(device) if c[0] == name)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_matches_reference(device, backend, case_id, squared):
    if backend == "triton" and INTERPRETED and case_id in BIG_GRIDS:
        pytest.skip("too many programs for Triton's interpreter")
    _, tensors, groups, g = _case(case_id, device)
    got = ops.grouped_grad_norm(tensors, groups, g, squared=squared, backend=backend)
    want = ops.grouped_grad_norm(tensors, groups, g, squared=squared, backend="reference")
    assert got.dtype == torch.float32 and got.shape == (g,) and got.device.type == device
    torch.testing.assert_close(got, want, **TOL, equal_nan=True)


@conftest.requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_cuda_bits_equal_cpu(case_id):
    # The documented order is the CUDA kernel's too: the same bits as the CPU's.
    _, tensors, groups, g = _case(case_id, "cuda")
    cpu_tensors = [t.cpu() for t in tensors]
    for squared in (False, True):
        got = ops.grouped_grad_norm(tensors, groups, g, squared=squared, backend="native")
        want = ops.grouped_grad_norm(cpu_tensors, groups, g, squared=squared, backend="native")
        assert _same_bits(got.cpu(), want), case_id


def _same_bits(a, b):
    """Equal bits, except that any NaN equals any NaN (payloads differ by device)."""
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(
        a[~nan].view(torch.int32), b[~nan].view(torch.int32)
    )


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_empty_list_and_groups(device, backend):
    # An empty list has no device: zeros on the CPU, whatever the backend.
    got = ops.grouped_grad_norm([], [], 3, backend=backend)
    assert got.device.type == "cpu" and torch.equal(got, torch.zeros(3))
    got = ops.grouped_grad_norm([], torch.zeros(0, dtype=torch.int64), 0, backend=backend)
    assert got.shape == (0,)
    ts = [torch.ones(4, device=device), torch.ones(0, device=device)]
    out = ops.grouped_grad_norm(ts, [1, 0], 3, backend=backend)
    assert torch.equal(out.cpu(), torch.tensor([0.0, 2.0, 0.0]))
    # Empty tensors only, and no groups at all.
    out = ops.grouped_grad_norm([torch.ones(0, device=device)], [1], 2, backend=backend)
    assert torch.equal(out.cpu(), torch.zeros(2))
    assert ops.grouped_grad_norm(ts[1:], [0], 1, backend=backend).device.type == device
    table = torch.full((2,), 0.25, device=device)
    ops.grouped_sq_norm_accumulate_([], [], table, backend=backend)
    assert torch.equal(table.cpu(), torch.full((2,), 0.25))


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_accumulate(device, backend):
    _, tensors, groups, g = _case("sizes_f32", device)
    table = torch.full((g,), 0.5, device=device)
    ops.grouped_sq_norm_accumulate_(tensors, groups, table, backend=backend)
    ops.grouped_sq_norm_accumulate_(tensors, torch.tensor(groups), table, backend=backend)
    once = ops.grouped_grad_norm(tensors, groups, g, squared=True, backend="reference")
    torch.testing.assert_close(table, 0.5 + 2 * once, **TOL)
    ref = torch.full((g,), 0.5, device=device)
    ops.grouped_sq_norm_accumulate_(tensors, groups, ref, backend="reference")
    ops.grouped_sq_norm_accumulate_(tensors, groups, ref, backend="reference")
    torch.testing.assert_close(table, ref, **TOL)


def _segment_inputs(dtype, device):
    sizes = [0, 5, 70_000, 1, 300, 0, 131_072]
    flat = torch.randn(sum(sizes) + 7, generator=torch.Generator().manual_seed(9))
    offsets = torch.tensor([3] + sizes).cumsum(0)
    return flat.to(device=device, dtype=dtype), offsets, [2, 0, 1, 1, 0, 3, 2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_segments(device, backend, dtype):
    flat, offsets, groups = _segment_inputs(dtype, device)
    for squared in (False, True):
        got = ops.segment_grad_norm(flat, offsets, groups, 5, squared=squared, backend=backend)
        want = ops.segment_grad_norm(flat, offsets, groups, 5, squared=squared, backend="reference")
        assert got.device.type == device
        torch.testing.assert_close(got, want, **TOL)
    # The same numbers as the tensor-list op over the same pieces, to the bit.
    pieces = [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    assert torch.equal(
        ops.segment_grad_norm(flat, offsets, groups, 5, backend=backend),
        ops.grouped_grad_norm(pieces, groups, 5, backend=backend),
    )


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_segment_errors(device, backend):
    flat = torch.randn(10, device=device)
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.segment_grad_norm(flat, [0, 5, 4], [0, 0], 1, backend=backend)
    with pytest.raises(IndexError, match="offsets must lie in"):
        ops.segment_grad_norm(flat, [0, 11], [0], 1, backend=backend)
    with pytest.raises(IndexError, match=r"group_of_segment\[0\] = 3"):
        ops.segment_grad_norm(flat, [0, 5], [3], 1, backend=backend)
    with pytest.raises(ValueError, match="contiguous 1-D"):
        ops.segment_grad_norm(flat[::2], [0, 5], [0], 1, backend=backend)
    with pytest.raises(TypeError, match="flat has dtype"):
        ops.segment_grad_norm(flat.double(), [0, 5], [0], 1, backend=backend)
    with pytest.raises(ValueError, match="2 entries"):
        ops.segment_grad_norm(flat, [0, 5, 6], [0], 1, backend=backend)


def test_segment_without_cuda_kernel_uses_triton(monkeypatch):
    # A build without the CUDA kernels serves CUDA tensors with Triton: the
    # automatic choice must then work, not point at a missing native kernel.
    from pada_ext import _dispatch

    monkeypatch.setattr(_dispatch, "has_native_kernel", lambda op, key: key == "CPU")
    if not _dispatch.triton_available():
        pytest.skip("triton is not installed")
    device = conftest.triton_device()
    if device == "cpu":  # no GPU: the choice itself, as on a CUDA device
        assert (
            _dispatch.resolve_backend("segment_grad_norm", None, torch.device("cuda")) == "triton"
        )
        return
    flat, offsets, groups = _segment_inputs(torch.float32, device)
    got = ops.segment_grad_norm(flat, offsets, groups, 5)
    want = ops.segment_grad_norm(flat, offsets, groups, 5, backend="reference")
    torch.testing.assert_close(got, want, **TOL)


def _tree(lanes):
    for s in (128, 64, 32, 16, 8, 4, 2, 1):
        lanes = lanes[:s] + lanes[s : 2 * s]
    return lanes[0]


def _contract_order(tensors, groups, num_groups):
    """The summation order fixed in csrc/common/grouped_grad_norm.h, step by step."""
    partials = [[] for _ in range(num_groups)]
    for t, g in zip(tensors, groups):
        x = t.reshape(-1).float().cpu()
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


@pytest.mark.parametrize("device", DEVICES)
def test_bits_follow_the_documented_order(device):
    # The CPU and the CUDA kernels, pinned to the documented order.
    tensors = _make([1, 255, 256, 1000, 65_537, 70_001], DTYPES, 12, device)
    groups = [1, 0, 1, 2, 1, 0]
    got = ops.grouped_grad_norm(tensors, groups, 4, squared=True, backend="native")
    assert torch.equal(got.cpu(), _contract_order(tensors, groups, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_every_finite_16_bit_value(device, dtype):
    # One-element segments take the portable scalar conversion (the F16C one
    # is the CPU's), and on CUDA ~200 launches of row batches.
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype)
    x = x[torch.isfinite(x)]
    want = x.float().square()
    n = x.numel()
    got = ops.segment_grad_norm(
        x.to(device), torch.arange(n + 1), torch.arange(n), n, squared=True, backend="native"
    )
    assert torch.equal(got.cpu(), want)


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


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    tensors = _make([0, 3, 300, 70_000], DTYPES, 8, device)
    gi = torch.tensor([0, 1, 1, 2])
    torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 3, False))
    torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 4, True))
    torch.library.opcheck(
        torch.ops.pada.grouped_sq_norm_accumulate_.default,
        (tensors, gi, torch.zeros(3, device=device)),
    )
    flat = torch.randn(1000, device=device)
    torch.library.opcheck(
        torch.ops.pada.segment_grad_norm.default,
        (flat, torch.tensor([0, 10, 10, 999]), torch.tensor([1, 0, 1]), 2, False),
    )


@pytest.mark.parametrize("device,backend,compiler", COMPILE_CASES)
def test_torch_compile_fullgraph(device, backend, compiler):
    tensors = _make([10, 300, 70_000], DTYPES, 9, device)
    flat = torch.randn(1000, device=device)

    @torch.compile(fullgraph=True, backend=compiler)
    def f(ts, flat):
        table = torch.zeros(3, device=flat.device)
        ops.grouped_sq_norm_accumulate_(ts, [0, 2, 2], table, backend=backend)
        seg = ops.segment_grad_norm(flat, [0, 10, 999], [1, 0], 2, backend=backend)
        return ops.grouped_grad_norm(ts, [0, 1, 1], 2, backend=backend) * 2, table, seg + 1

    got, table, seg = f(tensors, flat)
    torch.testing.assert_close(got, 2 * ops.grouped_grad_norm(tensors, [0, 1, 1], 2))
    torch.testing.assert_close(table, ops.grouped_grad_norm(tensors, [0, 2, 2], 3, squared=True))
    torch.testing.assert_close(seg, 1 + ops.segment_grad_norm(flat, [0, 10, 999], [1, 0], 2))


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_no_host_sync(device, backend):
    _, tensors, groups, g = _case("mixed", device)
    flat, offsets, seg_groups = _segment_inputs(torch.float16, device)
    table = torch.zeros(g, device=device)
    ops.grouped_grad_norm(tensors, groups, g, backend=backend)  # compiles Triton kernels first
    gi = torch.tensor(groups)  # CPU group indices: read on the host, no sync
    with conftest.no_sync(device):
        ops.grouped_grad_norm(tensors, gi, g, backend=backend)
        ops.grouped_sq_norm_accumulate_(tensors, gi, table, backend=backend)
        ops.segment_grad_norm(flat, offsets, torch.tensor(seg_groups), 5, backend=backend)


@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_non_default_stream(backend):
    _, tensors, groups, g = _case("mixed", "cuda")
    want = ops.grouped_grad_norm(tensors, groups, g, backend="reference")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = ops.grouped_grad_norm(tensors, groups, g, backend=backend)
        table = torch.zeros(g, device="cuda")
        ops.grouped_sq_norm_accumulate_(tensors, groups, table, backend=backend)
    side.synchronize()
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(table, want.square(), rtol=5e-5, atol=1e-6)


@conftest.requires_cuda
@pytest.mark.cuda
def test_cuda_graph_replay_sees_new_gradients():
    # The chunk table travels by value in the launches: a captured graph
    # replays with whatever the (same) tensors hold at replay time.
    _, tensors, groups, g = _case("mixed", "cuda")
    tensors.append(torch.randn(40, 30, device="cuda")[:, ::3])  # copied inside the graph
    groups.append(1)
    flat, offsets, seg_groups = _segment_inputs(torch.bfloat16, "cuda")
    gi, sgi = torch.tensor(groups), torch.tensor(seg_groups)
    table = torch.zeros(g, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up, as torch.cuda.graphs asks
        ops.grouped_grad_norm(tensors, gi, g, backend="native")
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        norms = ops.grouped_grad_norm(tensors, gi, g, backend="native")
        table.zero_()
        ops.grouped_sq_norm_accumulate_(tensors, gi, table, backend="native")
        seg = ops.segment_grad_norm(flat, offsets, sgi, 5, squared=True, backend="native")
    for step in range(3):
        gen = torch.Generator().manual_seed(100 + step)
        for t in tensors + [flat]:
            t.copy_(torch.randn(t.shape, generator=gen) * (step + 1))
        torch.empty(1 << 20, device="cuda")  # allocator traffic between replays
        graph.replay()
        torch.cuda.synchronize()
        cpu = [t.cpu() for t in tensors]
        assert _same_bits(norms.cpu(), ops.grouped_grad_norm(cpu, groups, g)), step
        assert _same_bits(table.cpu(), ops.grouped_grad_norm(cpu, groups, g, squared=True))
        want = ops.segment_grad_norm(flat.cpu(), offsets, sgi, 5, squared=True)
        assert _same_bits(seg.cpu(), want), step


@conftest.requires_cuda
@pytest.mark.cuda
@requires_triton
def test_triton_refuses_cuda_graph_capture():
    tensors = _make([10, 300], DTYPES, 13, "cuda")
    ops.grouped_grad_norm(tensors, [0, 1], 2, backend="triton")  # compiled before capture
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA graph"):
        with torch.cuda.graph(graph):
            ops.grouped_grad_norm(tensors, [0, 1], 2, backend="triton")


@conftest.requires_two_gpus
@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_second_gpu(backend):
    # Tensors on cuda:1 while cuda:0 is current: the launches go to cuda:1.
    _, tensors, groups, g = _case("mixed", "cuda:1")
    flat, offsets, seg_groups = _segment_inputs(torch.float32, "cuda:1")
    with torch.cuda.device(0):
        got = ops.grouped_grad_norm(tensors, groups, g, backend=backend)
        table = torch.zeros(g, device="cuda:1")
        ops.grouped_sq_norm_accumulate_(tensors, groups, table, backend=backend)
        seg = ops.segment_grad_norm(flat, offsets, seg_groups, 5, backend=backend)
    assert got.device == torch.device("cuda:1") and seg.device == torch.device("cuda:1")
    cpu = [t.cpu() for t in tensors]
    torch.testing.assert_close(got.cpu(), ops.grouped_grad_norm(cpu, groups, g), **TOL)
    torch.testing.assert_close(
        table.cpu(), ops.grouped_grad_norm(cpu, groups, g, squared=True), **TOL
    )
    want = ops.segment_grad_norm(flat.cpu(), offsets, seg_groups, 5)
    torch.testing.assert_close(seg.cpu(), want, **TOL)
    with pytest.raises((RuntimeError, ValueError), match="one device"):
        ops.grouped_grad_norm([tensors[0], tensors[1].to("cuda:0")], [0, 0], 1, backend=backend)


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES + [pytest.param("cpu", "reference")])
def test_errors(device, backend):
    ts = [torch.randn(3, device=device), torch.randn(4, device=device)]
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
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.grouped_grad_norm([], [], 1, backend="bogus")


@pytest.mark.parametrize("device", DEVICES)
def test_errors_native_only(device):
    ts = [torch.randn(3, device=device)]
    with pytest.raises(TypeError, match="table must be float32"):
        ops.grouped_sq_norm_accumulate_(ts, [0], torch.zeros(2, dtype=torch.float64, device=device))
    with pytest.raises(IndexError, match="out of range for num_groups = 2"):
        ops.grouped_sq_norm_accumulate_(ts, [2], torch.zeros(2, device=device))
    if device == "cuda":  # what the Meta fallbacks cannot see on the CPU
        with pytest.raises(RuntimeError, match="table is on cpu"):
            ops.grouped_sq_norm_accumulate_(ts, [0], torch.zeros(2))
        with pytest.raises(ValueError, match="group_index must be a CPU tensor"):
            gi = torch.zeros(1, dtype=torch.int64, device=device)
            torch.ops.pada.grouped_grad_norm(ts, gi, 1)


@requires_triton
@pytest.mark.triton
def test_triton_opcheck():
    device = conftest.triton_device()
    tensors = _make([0, 7, 300], DTYPES, 11, device)
    gi = torch.tensor([0, 1, 1])
    flat = torch.randn(1000, device=device)
    names = ("grouped_grad_norm", "grouped_sq_norm_accumulate_", "segment_grad_norm")
    with conftest.triton_selected(*names):
        torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 2, False))
        torch.library.opcheck(
            torch.ops.pada.grouped_sq_norm_accumulate_.default,
            (tensors, gi, torch.zeros(2, device=device)),
        )
        torch.library.opcheck(
            torch.ops.pada.segment_grad_norm.default,
            (flat, torch.tensor([0, 10, 10, 999]), torch.tensor([1, 0, 1]), 2, True),
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
    done = conftest.run_python("-c", code, timeout=300, interpret_triton=False)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("tensors", [[], [torch.ones(2)]], ids=["empty", "one"])
def test_backend_auto_is_not_a_backend(tensors):
    """backend="auto" was accepted as an undocumented alias of None; only the
    documented names are accepted now, on every op."""
    index = [0] * len(tensors)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.grouped_grad_norm(tensors, index, 1, backend="auto")
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.sample_with_replacement(torch.ones(3), 2, backend="auto")
