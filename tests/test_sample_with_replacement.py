"""pada_ext.ops.sample_with_replacement: statistics, exactness, determinism,
errors and the custom-op contract, for every backend that runs here."""

import numpy as np
import pytest
import torch
from conftest import DEVICES
from scipy import stats

import pada_ext
from pada_ext import ops

# The native kernel on every device here, and the plain-PyTorch reference.
BACKENDS = [("native", d) for d in DEVICES] + [("reference", "cpu")]
P_MIN = 1e-4  # outcomes are fixed by the seeds: a correct sampler passes every time


def draw(weights, m, backend, device, seed=0):
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


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_zeros_never_drawn(backend, device):
    w = torch.zeros(10_000, dtype=torch.float64)
    w[[1, 4095, 4096, 9999]] = torch.tensor([1e-300, 1.0, 1e300, 5.0], dtype=torch.float64)
    idx = draw(w, 200_000, backend, device, seed=5)
    assert set(idx.unique().tolist()) <= {1, 4095, 4096, 9999}
    # 1e300 dominates: the others have probability < 1e-299.
    assert bool((idx == 4096).all())


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.parametrize("device", DEVICES)
def test_hundred_million_weights(device):
    n = 10**8
    w = torch.ones(n, dtype=torch.float32, device=device)
    w[-1] = float(n)  # half of the mass on the last index
    idx = ops.sample_with_replacement(w, 100_000, generator=torch.Generator(device).manual_seed(1))
    last = int((idx == n - 1).sum())
    assert abs(last - 50_000) < 5 * 50_000**0.5
    assert int(idx.max()) < n and int(idx.min()) >= 0


@pytest.mark.parametrize("backend,device", BACKENDS)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu_bit_for_bit():
    w = torch.rand(123_457, dtype=torch.float64)
    seed = torch.tensor([2024], dtype=torch.int64)
    cpu = torch.ops.pada.sample_with_replacement(w, 300_000, seed)
    gpu = torch.ops.pada.sample_with_replacement(w.cuda(), 300_000, seed.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_weights(backend, device):
    base = torch.zeros(4000, dtype=torch.float64)
    base[::2] = power_law(2000)
    w = base[::2]  # a strided view
    assert not w.is_contiguous()
    idx = draw(w, 200_000, backend, device, seed=9)
    assert chi_square_p(idx, w) > P_MIN


@pytest.mark.parametrize("backend,device", BACKENDS)
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


def test_opcheck():
    seed = torch.tensor([77], dtype=torch.int64)
    for w in (torch.rand(10), power_law(5000), many_zeros(4097)):
        for m in (0, 1, 1000):
            torch.library.opcheck(torch.ops.pada.sample_with_replacement.default, (w, m, seed))


def test_torch_compile_fullgraph():
    def f(w):
        return ops.sample_with_replacement(w, 64) + 1

    w = torch.rand(1000)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    eager = f(w)
    torch.manual_seed(0)
    torch.testing.assert_close(compiled(w), eager, rtol=0, atol=0)

    dyn = torch.compile(f, fullgraph=True, backend="inductor", dynamic=True)
    for n in (10, 77, 5000):
        out = dyn(torch.rand(n))
        assert out.shape == (64,) and int(out.min()) >= 1 and int(out.max()) <= n


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
