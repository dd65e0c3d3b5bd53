"""pada_ext.ops.sample_with_replacement: statistics, exactness, determinism,
errors and the custom-op contract, for every backend that runs here."""

import hashlib

import numpy as np
import pytest
import torch
from conftest import (
    BACKEND_DEVICES,
    DEVICES,
    TritonOp,
    requires_triton,
    requires_two_gpus,
    triton_device,
    triton_selected,
)
from scipy import stats

import pada_ext
from pada_ext import ops

# Every (device, backend) pair of this session, and the plain-PyTorch
# reference. Triton's interpreter (CPU tensors, no GPU) is far too slow for
# these sizes: the Triton section at the end of this file covers it.
BACKENDS = [p for p in BACKEND_DEVICES if p.values != ("cpu", "triton")] + [
    pytest.param("cpu", "reference", id="cpu-reference")
]
# The backends that run on the GPU (empty without one).
CUDA_BACKENDS = [p for p in BACKEND_DEVICES if p.values[0] == "cuda"]
P_MIN = 1e-4  # outcomes are fixed by the seeds: a correct sampler passes every time


def draw(weights, m, backend, device, seed=0):
    # The weights are moved to `device` here, and the indices back to the CPU.
    g = torch.Generator(device=device).manual_seed(seed)
    return ops.sample_with_replacement(weights.to(device), m, generator=g, backend=backend).cpu()


def chi_square_p(idx, weights, bins=None):
    """p-value of the counts of `idx` against `weights`; `bins` groups indices."""
    w = weights.double().cpu()
    n = w.numel()
    counts = torch.bincount(idx, minlength=n).double()
    if bins is not None:
        counts = torch.zeros(int(bins.max()) + 1, dtype=torch.float64).index_add_(0, bins, counts)
        w = torch.zeros_like(counts).index_add_(0, bins, w)
    nz = w > 0
    assert counts[~nz].sum() == 0, "an index of zero weight was drawn"
    expected = w[nz] / w.sum() * idx.numel()
    return stats.chisquare(counts[nz].numpy(), expected.numpy()).pvalue


def power_law(n, a=1.5):
    return torch.arange(1, n + 1, dtype=torch.float64) ** -a


def many_zeros(n):
    w = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w[torch.arange(n) % 3 != 0] = 0.0
    return w


DISTRIBUTIONS = {
    "uniform": lambda: torch.ones(1000),
    "power_law": lambda: power_law(5000),
    "many_zeros": lambda: many_zeros(9001),
    "random_multi_block": lambda: torch.rand(20000, generator=torch.Generator().manual_seed(2)),
    "two_points": lambda: torch.tensor([1.0, 3.0]),
    "single": lambda: torch.tensor([0.5]),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_chi_square(name, dtype, backend, device):
    w = DISTRIBUTIONS[name]().to(dtype)
    idx = draw(w, 400_000, backend, device, seed=7)
    assert idx.dtype == torch.int64 and idx.shape == (400_000,)
    assert int(idx.min()) >= 0 and int(idx.max()) < w.numel()
    if w.numel() == 1:
        assert bool((idx == 0).all())
        return
    assert chi_square_p(idx, w) > P_MIN


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_few_heavy_among_millions_of_tiny(backend, device):
    n = 2_000_000
    w = torch.full((n,), 1e-6, dtype=torch.float32)
    heavy = torch.tensor([0, 12345, 1_000_000, n - 1])
    w[heavy] = torch.tensor([1.0, 0.5, 0.25, 2.0])
    idx = draw(w, 1_000_000, backend, device, seed=3)
    # Bins: each heavy index alone, the tiny ones in 20 groups.
    bins = torch.arange(n) % 20 + 4
    bins[heavy] = torch.arange(4)
    assert chi_square_p(idx, w, bins) > P_MIN


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_no_float32_cumsum_collapse(backend, device):
    # One heavy item first, then 2^20 items 1e9 times lighter. A float32 running
    # sum stops growing after the heavy item, so those items would never be drawn.
    n = 1 + 2**20
    w = torch.full((n,), 1e-9, dtype=torch.float32)
    w[0] = 1.0
    m = 1_000_000
    idx = draw(w, m, backend, device, seed=11)
    tiny_mass = 2**20 * float(torch.tensor(1e-9, dtype=torch.float32))
    expected = m * tiny_mass / (1.0 + tiny_mass)  # about 1047
    hits = int((idx > 0).sum())
    assert abs(hits - expected) < 5 * expected**0.5, (hits, expected)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_zeros_never_drawn(backend, device):
    w = torch.zeros(10_000, dtype=torch.float64)
    w[[1, 4095, 4096, 9999]] = torch.tensor([1e-300, 1.0, 1e300, 5.0], dtype=torch.float64)
    idx = draw(w, 200_000, backend, device, seed=5)
    assert set(idx.unique().tolist()) <= {1, 4095, 4096, 9999}
    # 1e300 dominates: the others have probability < 1e-299.
    assert bool((idx == 4096).all())


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_subnormal_masses(backend, device):
    # L / mass overflows for a subnormal block mass or total: zeros must stay zeros.
    w = torch.tensor([1e-320, 0.0, 3e-320, 0.0], dtype=torch.float64)
    idx = draw(w, 100_000, backend, device, seed=1)
    assert set(idx.unique().tolist()) <= {0, 2}
    assert abs(int((idx == 2).sum()) - 75_000) < 5 * (100_000 * 0.75 * 0.25) ** 0.5
    # A subnormal block beside normal ones: its items are (almost) never drawn.
    w = torch.zeros(5000, dtype=torch.float64)
    w[:4096:2] = 1e-320
    w[4096:] = 1.0
    idx = draw(w, 50_000, backend, device, seed=2)
    assert int(idx.min()) >= 4096


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_more_than_2_pow_24_categories(backend, device):
    n = 2**24 + 1
    with pytest.raises(RuntimeError, match="2\\^24"):
        torch.multinomial(torch.ones(n), 1, replacement=True)
    w = torch.ones(n, dtype=torch.float32)
    w[-1] = 1e6  # the last index, past 2^24, takes ~5.6% of the mass
    idx = draw(w, 2_000_000, backend, device, seed=13)
    bins = torch.arange(n) % 16 + 1
    bins[-1] = 0
    assert chi_square_p(idx, w, bins) > P_MIN


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.values[1] != "reference"])
def test_hundred_million_weights(device, backend):
    n = 10**8
    w = torch.ones(n, dtype=torch.float32, device=device)
    w[-1] = float(n)  # half of the mass on the last index
    g = torch.Generator(device).manual_seed(1)
    idx = ops.sample_with_replacement(w, 100_000, generator=g, backend=backend)
    last = int((idx == n - 1).sum())
    assert abs(last - 50_000) < 5 * 50_000**0.5
    assert int(idx.max()) < n and int(idx.min()) >= 0


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_same_generator_state_same_output(backend, device):
    w = torch.rand(50_000, generator=torch.Generator().manual_seed(0))
    a = draw(w, 10_000, backend, device, seed=42)
    b = draw(w, 10_000, backend, device, seed=42)
    c = draw(w, 10_000, backend, device, seed=43)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
def test_manual_seed_governs_default_generator(device):
    w = torch.rand(1000, device=device)
    torch.manual_seed(123)
    a = ops.sample_with_replacement(w, 500)
    b = ops.sample_with_replacement(w, 500)  # the generator advanced
    torch.manual_seed(123)
    torch.testing.assert_close(ops.sample_with_replacement(w, 500), a, rtol=0, atol=0)
    assert not torch.equal(a, b)


def _pinned_weights(kind, n):
    g = torch.Generator().manual_seed(n)
    r = torch.rand(n, generator=g, dtype=torch.float64)
    if kind == "uniform":
        return (r + 1e-3).float()
    if kind == "half_zeros":
        return torch.where(torch.rand(n, generator=g) < 0.5, 0.0, r).float()
    if kind == "spiky":
        return r.pow(8) * torch.where(torch.rand(n, generator=g) < 0.001, 1e6, 1.0)
    return torch.ones(n)


# Digests of the CPU output as the scalar kernel produced it (commit 2275c4b):
# the SIMD paths (several blocks built per vector, draws in vector lanes)
# must reproduce it bit for bit. N = 600001 has enough blocks for the
# eight-lane build; M = 129 and 300001 end inside a vector chunk.
@pytest.mark.parametrize(
    "kind,n,m,digest",
    [
        ("uniform", 600_001, 300_001, "fdd212e9e8e26564"),
        ("half_zeros", 600_001, 70_000, "4bed56a913e837df"),
        ("spiky", 4097, 1000, "b132069a711aa014"),
        ("uniform", 100_000, 129, "a5e0866ec683bb8b"),
        ("ones", 5000, 1000, "435c4254b38c2d8d"),
    ],
)
def test_cpu_output_pinned(kind, n, m, digest):
    g = torch.Generator().manual_seed(n + m)
    idx = ops.sample_with_replacement(_pinned_weights(kind, n), m, generator=g, backend="native")
    assert hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16] == digest


def test_thread_count_invariance():
    w = torch.rand(300_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seed = torch.tensor([987654321], dtype=torch.int64)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(torch.ops.pada.sample_with_replacement(w, 500_000, seed))
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=0, atol=0)


def raw_op(backend):
    if backend == "triton":
        return TritonOp("sample_with_replacement")
    return torch.ops.pada.sample_with_replacement


def bit_identity_cases():
    """(name, weights): sizes around the warp width and the 4096-slot block,
    uniform blocks narrower than a warp, small integer weights (exact ties)."""
    g = torch.Generator().manual_seed(17)
    for n in [*range(1, 41), 4095, 4096, 4097, 5000]:
        yield f"rand{n}", torch.rand(n, generator=g, dtype=torch.float64)
    for n in (2, 4, 8, 16):
        yield f"uniform{n}", torch.ones(n)
    for rep in range(40):
        n = int(torch.randint(1, 41, (1,), generator=g))
        w = torch.randint(0, 5, (n,), generator=g).double()
        w[0] += float(w.sum() == 0)
        yield f"ints{rep}", w
    # More than 32 blocks: the total's lane order is not the block order.
    yield "blocks49", torch.rand(200_000, generator=g, dtype=torch.float64) ** 3
    yield "f32_123457", torch.rand(123_457, generator=g)


@pytest.mark.parametrize("device,backend", CUDA_BACKENDS)
def test_cuda_matches_cpu_bit_for_bit(device, backend):
    op = raw_op(backend)
    cpu_op = torch.ops.pada.sample_with_replacement
    for name, w in bit_identity_cases():
        seed = torch.tensor([2024 + w.numel()], dtype=torch.int64)
        m = 300_000 if w.numel() > 4096 else 20_000
        want = cpu_op(w, m, seed)
        got = op(w.to(device), m, seed.to(device))
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("device,backend", CUDA_BACKENDS)
def test_uniform_blocks_narrower_than_a_warp_draw_every_index(device, backend):
    # The defect the host replay catches: blocks of L <= 16 slots lost slot 0.
    for n in (2, 4, 8, 16):
        seed = torch.tensor([5], device=device)
        idx = raw_op(backend)(torch.ones(n, device=device), 20_000, seed).cpu()
        assert bool((torch.bincount(idx, minlength=n) > 0).all()), n
        assert chi_square_p(idx, torch.ones(n)) > P_MIN


@pytest.mark.parametrize("device,backend", CUDA_BACKENDS)
def test_non_default_stream(device, backend):
    # Weights written on a side stream and sampled there, as on the default stream.
    op = raw_op(backend)
    base = torch.rand(9000, device=device, dtype=torch.float64)
    seed = torch.tensor([31], device=device)
    want = op(base * 2.0, 5000, seed)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = op(base * 2.0, 5000, seed)
        got_bad = torch.tensor([1.0, -1.0], device=device)
        with pytest.raises(ValueError, match=r"weights\[1\] is negative"):
            op(got_bad, 5, seed)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@requires_two_gpus
@pytest.mark.parametrize("backend", ["native", "triton"])
def test_second_gpu_with_first_current(backend):
    op = raw_op(backend)
    w = torch.rand(5000, dtype=torch.float64)
    seed = torch.tensor([77])
    with torch.cuda.device(0):
        want = op(w.to("cuda:0"), 4000, seed.to("cuda:0"))
        got = op(w.to("cuda:1"), 4000, seed.to("cuda:1"))
    assert got.device == torch.device("cuda:1")
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["native", "triton"])
def test_tagged_cudagraph_unsafe(backend):
    if not hasattr(torch.Tag, "cudagraph_unsafe"):
        pytest.skip("this torch has no cudagraph_unsafe tag")
    if backend == "triton":  # the same schema, so the same tags
        pytest.importorskip("triton")
    assert torch.Tag.cudagraph_unsafe in raw_op(backend).default.tags


@pytest.mark.parametrize("device,backend", CUDA_BACKENDS)
def test_cuda_graph_capture_raises(device, backend):
    op = raw_op(backend)
    w = torch.rand(100, device=device)
    seed = torch.tensor([1], device=device)
    op(w, 10, seed)  # compiled and warm before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA graph"):
        with torch.cuda.graph(graph):
            op(w, 10, seed)
    torch.cuda.synchronize()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_weights(backend, device):
    base = torch.zeros(4000, dtype=torch.float64)
    base[::2] = power_law(2000)
    w = base[::2]  # a strided view
    assert not w.is_contiguous()
    idx = draw(w, 200_000, backend, device, seed=9)
    assert chi_square_p(idx, w) > P_MIN


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_zero_samples(backend, device):
    idx = draw(torch.ones(10), 0, backend, device)
    assert idx.shape == (0,) and idx.dtype == torch.int64


BAD_WEIGHTS = [
    (torch.tensor([1.0, 2.0, -0.5, -1.0]), ValueError, r"weights\[2\] is negative"),
    (torch.tensor([1.0, float("nan")]), ValueError, r"weights\[1\] is NaN"),
    (torch.tensor([0.0, 0.0, float("inf")]), ValueError, r"weights\[2\] is infinite"),
    (torch.zeros(5), ValueError, "all weights are zero"),
    (torch.tensor([1e308, 1e308], dtype=torch.float64), ValueError, "overflows"),
    (torch.ones(2, 3), ValueError, "1-D"),
    (torch.ones(0), ValueError, "empty"),
    (torch.ones(4, dtype=torch.float16), TypeError, "float32 or float64"),
    (torch.ones(4, dtype=torch.int64), TypeError, "float32 or float64"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weights,error,match", BAD_WEIGHTS)
def test_bad_weights_native(weights, error, match, device):
    with pytest.raises(error, match=match):
        ops.sample_with_replacement(weights.to(device), 3, backend="native")


def test_bad_weight_index_in_a_late_block():
    w = torch.ones(100_000)
    w[70_001] = -3.0
    w[90_000] = float("nan")
    with pytest.raises(ValueError, match=r"weights\[70001\] is negative"):
        ops.sample_with_replacement(w, 3)


def test_bad_weights_reference():
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        ops.sample_with_replacement(torch.tensor([1.0, -1.0]), 3, backend="reference")
    with pytest.raises(ValueError, match="all weights are zero"):
        ops.sample_with_replacement(torch.zeros(3), 3, backend="reference")


@pytest.mark.parametrize(
    "num_samples,error", [(-1, ValueError), (2.5, TypeError), (True, TypeError), ("3", TypeError)]
)
def test_bad_num_samples(num_samples, error):
    with pytest.raises(error, match="num_samples"):
        ops.sample_with_replacement(torch.ones(3), num_samples)


def test_bad_arguments_of_the_raw_op():
    seed = torch.tensor([1], dtype=torch.int64)
    with pytest.raises(ValueError, match="num_samples must be >= 0"):
        torch.ops.pada.sample_with_replacement(torch.ones(3), -2, seed)
    with pytest.raises(ValueError, match="seed"):
        torch.ops.pada.sample_with_replacement(torch.ones(3), 2, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="weights\\[0\\] is negative"):
        torch.ops.pada.sample_with_replacement(torch.tensor([-1.0]), 2, seed)


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        ops.sample_with_replacement(torch.ones(3), 2, backend="fortran")


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    seed = torch.tensor([77], dtype=torch.int64, device=device)
    for w in (torch.rand(10), power_law(5000), many_zeros(4097)):
        for m in (0, 1, 1000):
            torch.library.opcheck(
                torch.ops.pada.sample_with_replacement.default, (w.to(device), m, seed)
            )


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    def f(w):
        return ops.sample_with_replacement(w, 64) + 1

    w = torch.rand(1000, device=device)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    eager = f(w)
    torch.manual_seed(0)
    torch.testing.assert_close(compiled(w), eager, rtol=0, atol=0)

    dyn = torch.compile(f, fullgraph=True, backend="inductor", dynamic=True)
    for n in (10, 77, 5000):
        out = dyn(torch.rand(n, device=device))
        assert out.device.type == torch.device(device).type
        assert out.shape == (64,) and int(out.min()) >= 1 and int(out.max()) <= n


@pytest.mark.parametrize("device,backend", CUDA_BACKENDS)
def test_torch_compile_inductor_cuda_matches_eager(device, backend):
    op = raw_op(backend)

    def f(w, seed):
        return op(w * 3.0, 256, seed) * 2

    w = torch.rand(3000, device=device)
    seed = torch.tensor([9], device=device)
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(w, seed), f(w, seed), rtol=0, atol=0)


def test_numpy_agrees_on_the_distribution():
    # A second opinion: two-sample comparison of the counts against numpy's sampler.
    w = power_law(300).float()
    idx = draw(w, 200_000, "native", "cpu", seed=21).numpy()
    rng = np.random.default_rng(0)
    ref = rng.choice(300, size=200_000, p=(w.double() / w.double().sum()).numpy())
    table = np.stack([np.bincount(idx, minlength=300), np.bincount(ref, minlength=300)])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > P_MIN


def test_package_exports():
    assert pada_ext.ops.sample_with_replacement is ops.sample_with_replacement


# ---- The Triton kernel: bit-identical to the CPU kernel, and a correct sampler.
# Without a GPU it runs in Triton's interpreter (~4 ms a program, ~50 us a scalar
# operation), so the sizes stay small: a 4096-slot block whose sweep visits every
# slot costs a few seconds.


def triton_test(f):
    return pytest.mark.triton(requires_triton(f))


TRITON_DEV = triton_device()


@pytest.fixture(scope="module")
def triton_op():
    return TritonOp("sample_with_replacement")


def _triton_seed(value):
    return torch.tensor([value], dtype=torch.int64, device=TRITON_DEV)


def _triton_native(weights, num_samples, seed):
    # The CPU kernel is the specification.
    return torch.ops.pada.sample_with_replacement(weights.cpu(), num_samples, seed.cpu())


def _triton_weights(n, kind, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        w = torch.rand(n, generator=g, dtype=torch.float64) + 0.01
    elif kind == "power":  # a few large weights and a long tail
        w = (torch.rand(n, generator=g, dtype=torch.float64) + 1e-3) ** -2.5
    elif kind == "zeros":  # a third of the weights zero, the rest tiny to large
        w = torch.rand(n, generator=g, dtype=torch.float64) ** 4
        w[torch.randperm(n, generator=g)[: n // 3]] = 0.0
    else:
        raise ValueError(kind)
    return w.to(dtype=dtype, device=TRITON_DEV)


@triton_test
@pytest.mark.parametrize(
    "n,num_samples,kind,dtype",
    [
        (1, 300, "uniform", torch.float64),
        (2, 500, "uniform", torch.float32),
        (5, 1000, "zeros", torch.float64),
        (5, 1000, "power", torch.float32),
        (100, 2000, "power", torch.float64),
        (100, 2000, "zeros", torch.float32),
        (4096, 3000, "power", torch.float64),
        (4096, 1000, "zeros", torch.float32),
        (5000, 3000, "power", torch.float32),  # two blocks
        (5000, 1000, "zeros", torch.float64),
    ],
)
def test_triton_bit_identical_to_cpu(triton_op, n, num_samples, kind, dtype):
    w = _triton_weights(n, kind, dtype, seed=n)
    seed = _triton_seed(-(2**62) + 12345 * n)  # negative: both key words in use
    out = triton_op(w, num_samples, seed)
    assert out.dtype == torch.int64 and out.shape == (num_samples,) and out.device == w.device
    assert torch.equal(out.cpu(), _triton_native(w, num_samples, seed))


@triton_test
@pytest.mark.parametrize("n", [*range(1, 41), 4095, 4097])
def test_triton_bit_identical_small_and_boundary_sizes(triton_op, n):
    # Every size narrower than, equal to and wider than a warp, and around a block.
    w = _triton_weights(n, "zeros" if n % 3 == 0 else "uniform", torch.float64, seed=100 + n)
    w[0] += 0.5  # never all zero
    assert torch.equal(
        triton_op(w, 500, _triton_seed(n)).cpu(), _triton_native(w, 500, _triton_seed(n))
    )


@triton_test
@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_triton_uniform_small_blocks_bit_identical(triton_op, n):
    w = torch.ones(n, device=TRITON_DEV)
    out = triton_op(w, 2000, _triton_seed(4)).cpu()
    assert torch.equal(out, _triton_native(w, 2000, _triton_seed(4)))
    assert bool((torch.bincount(out, minlength=n) > 0).all())


@triton_test
def test_triton_more_than_32_blocks(triton_op):
    # The total is summed in lane order over the 34 block masses (not block order).
    # Equal weights inside each block keep the sweeps trivial (cheap when interpreted).
    n = 33 * 4096 + 5
    per_block = 0.1 * (torch.arange(34, dtype=torch.float64) % 7 + 1)
    w = per_block.repeat_interleave(4096)[:n].to(TRITON_DEV)
    assert torch.equal(
        triton_op(w, 3000, _triton_seed(12)).cpu(), _triton_native(w, 3000, _triton_seed(12))
    )


def _triton_lane_mass(w):
    # block_mass(): 32 lane sums in slot order, folded in lane order.
    acc = [0.0] * 32
    for k, x in enumerate(w):
        acc[k % 32] += x
    m = 0.0
    for a in acc:
        m += a
    return m


@triton_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_all_light_block(triton_op, dtype):
    # Equal weights whose scaled masses all round below 1: the "no heavy slot" branch.
    for i in range(100):
        v = float(torch.tensor(0.01 + 0.0097 * i, dtype=dtype))
        if v * (8 / _triton_lane_mass([v] * 8)) < 1.0:
            break
    else:
        pytest.skip("no all-light block found")
    w = torch.full((8,), v, dtype=dtype, device=TRITON_DEV)
    assert torch.equal(
        triton_op(w, 500, _triton_seed(3)).cpu(), _triton_native(w, 500, _triton_seed(3))
    )


@triton_test
def test_triton_all_light_top(triton_op):
    # Four equal blocks whose scaled masses all round below 1 at the top level.
    v = 0.763774618976614
    mass = _triton_lane_mass([v] * 4096)
    total = 0.0
    for _ in range(4):
        total += mass
    assert mass * (4 / total) < 1.0
    w = torch.full((4 * 4096,), v, dtype=torch.float64, device=TRITON_DEV)
    assert torch.equal(
        triton_op(w, 2000, _triton_seed(-8)).cpu(), _triton_native(w, 2000, _triton_seed(-8))
    )


def _triton_philox(seed, index, stream):
    # philox_draw() of csrc/common/philox.h, to aim weights at a given draw.
    m32 = 0xFFFFFFFF
    c = [index & m32, (index >> 32) & m32, stream, 0]
    k0, k1 = seed & m32, (seed >> 32) & m32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & m32, (p0 >> 32) ^ c[3] ^ k1, p0 & m32]
        k0, k1 = (k0 + 0x9E3779B9) & m32, (k1 + 0xBB67AE85) & m32
    return c


@triton_test
@pytest.mark.parametrize("seed", [11, -5, 2**40 + 3])
def test_triton_tie_refinement_local(triton_op, seed):
    # Draw 0 hits a light slot whose threshold's top 32 bits equal its word 3,
    # so the slot is decided by stream 1 (accept_local's refinement).
    v = _triton_philox(seed, 0, 0)
    slot = v[2] >> 31  # L = 2: the slot is the top bit of word 2
    own = (v[3] + 0.5) / 2**32  # thr52 = v3 * 2^20 + 2^19, masses sum to exactly 2
    w = torch.zeros(2, dtype=torch.float64)
    w[slot], w[1 - slot] = own, 2.0 - own
    w = w.to(TRITON_DEV)
    out = triton_op(w, 64, _triton_seed(seed))
    assert torch.equal(out.cpu(), _triton_native(w, 64, _triton_seed(seed)))
    refined = (_triton_philox(seed, 0, 1)[1] >> 12) < 2**19
    assert int(out[0]) == (slot if refined else 1 - slot)


@triton_test
@pytest.mark.parametrize("seed", [7, -123456789])
def test_triton_tie_refinement_top(triton_op, seed):
    # Draw 0 picks a block whose top-level threshold's high word equals its word 1.
    v = _triton_philox(seed, 0, 0)
    blk = v[0] >> 31  # two blocks: the block is the top bit of word 0
    own = (v[1] + 0.5) / 2**32  # its share of the total, 2
    w = torch.empty(8192, dtype=torch.float64)
    # Equal weights inside a block keep its sweep trivial (cheap when interpreted).
    w[4096 * blk : 4096 * (blk + 1)] = own / 4096
    w[4096 * (1 - blk) : 4096 * (2 - blk)] = (2.0 - own) / 4096
    w = w.to(TRITON_DEV)
    out = triton_op(w, 64, _triton_seed(seed))
    assert torch.equal(out.cpu(), _triton_native(w, 64, _triton_seed(seed)))
    refined = _triton_philox(seed, 0, 1)[0] < 2**31
    assert (int(out[0]) >> 12) == (blk if refined else 1 - blk)


@triton_test
def test_triton_same_seed_same_output(triton_op):
    w = _triton_weights(300, "power", torch.float64)
    a, b = triton_op(w, 2000, _triton_seed(42)), triton_op(w, 2000, _triton_seed(42))
    assert torch.equal(a, b)
    assert not torch.equal(a, triton_op(w, 2000, _triton_seed(43)))
    assert triton_op(w, 0, _triton_seed(42)).shape == (0,)


@triton_test
def test_triton_public_api_matches_native():
    w = _triton_weights(64, "zeros", torch.float32)
    outs = []
    for backend in ("triton", "native"):
        g = torch.Generator(device=TRITON_DEV).manual_seed(5)
        outs.append(
            pada_ext.ops.sample_with_replacement(w, 777, generator=g, backend=backend).cpu()
        )
    assert torch.equal(outs[0], outs[1])


@triton_test
@pytest.mark.parametrize("n,dtype", [(50, torch.float64), (300, torch.float32)])
def test_triton_chi_square(triton_op, n, dtype):
    scipy_stats = pytest.importorskip("scipy.stats")
    # A power law with every third weight zero: expected counts stay >= 5.
    w = torch.arange(1, n + 1, dtype=torch.float64) ** -0.8
    w[::3] = 0.0
    w = w.to(dtype=dtype, device=TRITON_DEV)
    m = 20000
    counts = torch.bincount(triton_op(w, m, _triton_seed(2024)).cpu(), minlength=n).double()
    prob = w.double().cpu() / w.double().sum().cpu()
    assert counts[prob == 0].sum() == 0, "a zero weight was drawn"
    nz = prob > 0
    expected = prob[nz] * m
    assert expected.min() >= 5  # chi-square is valid
    p_value = scipy_stats.chisquare(counts[nz].numpy(), expected.numpy()).pvalue
    assert p_value > 1e-3


_NAN, _INF = float("nan"), float("inf")


@triton_test
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the interpreted bad values
@pytest.mark.parametrize(
    "values,dtype,match",
    [
        ([1.0, -2.0, 3.0], torch.float64, r"weights\[1\] is negative \(-2\)"),
        ([1.0, _NAN, -1.0], torch.float32, r"weights\[1\] is NaN"),
        ([1.0, 2.0, _INF], torch.float64, r"weights\[2\] is infinite \(inf\)"),
        ([-_INF, 1.0], torch.float32, r"weights\[0\] is infinite \(-inf\)"),
        ([1e300, 1.0], torch.float32, r"weights\[0\] is infinite"),  # inf as float32
        ([0.0, -0.0, 0.0], torch.float64, "all weights are zero"),
        ([1e308, 1e308], torch.float64, "overflows float64"),
    ],
)
def test_triton_bad_weights_raise_like_cpu(triton_op, values, dtype, match):
    w = torch.tensor(values, dtype=dtype, device=TRITON_DEV)
    with pytest.raises(ValueError, match=match) as got:
        triton_op(w, 10, _triton_seed(1))
    with pytest.raises(ValueError) as want:
        _triton_native(w, 10, _triton_seed(1))
    assert str(got.value) == str(want.value).splitlines()[0]


@triton_test
def test_triton_first_bad_index_across_blocks(triton_op):
    # NaN blocks have no table to build, so two 4096-slot blocks stay cheap.
    w = torch.ones(8192, dtype=torch.float64)
    w[[7000, 5000]] = _NAN
    with pytest.raises(ValueError, match=r"weights\[5000\] is NaN"):
        triton_op(w.to(TRITON_DEV), 10, _triton_seed(1))
    w[4095] = -_INF
    with pytest.raises(ValueError, match=r"weights\[4095\] is infinite \(-inf\)"):
        triton_op(w.to(TRITON_DEV), 10, _triton_seed(1))


@triton_test
def test_triton_bad_arguments(triton_op):
    w = torch.ones(4, device=TRITON_DEV)
    with pytest.raises(ValueError, match="1-D"):
        triton_op(torch.ones(2, 2, device=TRITON_DEV), 3, _triton_seed(0))
    with pytest.raises(ValueError, match="empty"):
        triton_op(torch.ones(0, device=TRITON_DEV), 3, _triton_seed(0))
    with pytest.raises(TypeError, match="float32 or float64"):
        triton_op(torch.ones(4, dtype=torch.float16, device=TRITON_DEV), 3, _triton_seed(0))
    with pytest.raises(ValueError, match="num_samples"):
        triton_op(w, -1, _triton_seed(0))
    with pytest.raises(ValueError, match="one-element int64"):
        triton_op(w, 3, torch.tensor([1, 2], device=TRITON_DEV))


@triton_test
def test_triton_opcheck(triton_op):
    w = _triton_weights(40, "zeros", torch.float64)
    with triton_selected("sample_with_replacement"):
        torch.library.opcheck(triton_op.default, (w, 100, _triton_seed(9)))


@triton_test
def test_triton_torch_compile_fullgraph(triton_op):
    # aot_eager: traces through the fake implementation without compiling C++ (slow here).
    w = _triton_weights(40, "uniform", torch.float64)

    @torch.compile(fullgraph=True, backend="aot_eager", dynamic=True)
    def f(w, seed):
        return torch.ops.pada.sample_with_replacement(w * 2.0, 50, seed)

    # The graph calls pada::; run while the Triton kernel serves the device, it runs that.
    with triton_selected("sample_with_replacement"):
        got = f(w, _triton_seed(3)).cpu()
    assert torch.equal(got, _triton_native(w * 2.0, 50, _triton_seed(3)))


@triton_test
@pytest.mark.parametrize(
    "weights",
    [
        [1e-320, 0.0, 3e-320, 0.0],  # subnormal total: T / total overflows
        [1e-320, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-321],
    ],
)
def test_triton_subnormal_mass_bit_identical(triton_op, weights):
    w = torch.tensor(weights, dtype=torch.float64, device=TRITON_DEV)
    seed = _triton_seed(31)
    got = triton_op(w, 2000, seed).cpu()
    torch.testing.assert_close(got, _triton_native(w, 2000, seed), rtol=0, atol=0)
    assert set(got.tolist()) <= {i for i, x in enumerate(weights) if x > 0}
