"""pada_triton::sample_with_replacement: bit-identical to the CPU kernel, and a correct sampler.

Without a GPU the kernels run in Triton's interpreter (~4 ms per program and
~50 us per scalar operation), so the sizes stay small: a 4096-slot block whose
sweep visits every slot costs a few seconds.
"""

import pytest
import torch
from conftest import requires_triton, triton_device

import pada_ext

pytestmark = [pytest.mark.triton, requires_triton]

DEV = triton_device()


@pytest.fixture(scope="module")
def op():
    from pada_ext.triton import sample_with_replacement  # noqa: F401

    return torch.ops.pada_triton.sample_with_replacement


def _seed(value):
    return torch.tensor([value], dtype=torch.int64, device=DEV)


def _native(weights, num_samples, seed):
    # The CPU kernel is the specification.
    return torch.ops.pada.sample_with_replacement(weights.cpu(), num_samples, seed.cpu())


def _weights(n, kind, dtype, seed=0):
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
    return w.to(dtype=dtype, device=DEV)


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
def test_bit_identical_to_cpu(op, n, num_samples, kind, dtype):
    w = _weights(n, kind, dtype, seed=n)
    seed = _seed(-(2**62) + 12345 * n)  # negative: both key words in use
    out = op(w, num_samples, seed)
    assert out.dtype == torch.int64 and out.shape == (num_samples,) and out.device == w.device
    assert torch.equal(out.cpu(), _native(w, num_samples, seed))


@pytest.mark.parametrize("n", [*range(1, 41), 4095, 4097])
def test_bit_identical_small_and_boundary_sizes(op, n):
    # Every size narrower than, equal to and wider than a warp, and around a block.
    w = _weights(n, "zeros" if n % 3 == 0 else "uniform", torch.float64, seed=100 + n)
    w[0] += 0.5  # never all zero
    assert torch.equal(op(w, 500, _seed(n)).cpu(), _native(w, 500, _seed(n)))


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_uniform_small_blocks_bit_identical(op, n):
    w = torch.ones(n, device=DEV)
    out = op(w, 2000, _seed(4)).cpu()
    assert torch.equal(out, _native(w, 2000, _seed(4)))
    assert bool((torch.bincount(out, minlength=n) > 0).all())


def test_more_than_32_blocks(op):
    # The total is summed in lane order over the 34 block masses (not block order).
    # Equal weights inside each block keep the sweeps trivial (cheap when interpreted).
    n = 33 * 4096 + 5
    per_block = 0.1 * (torch.arange(34, dtype=torch.float64) % 7 + 1)
    w = per_block.repeat_interleave(4096)[:n].to(DEV)
    assert torch.equal(op(w, 3000, _seed(12)).cpu(), _native(w, 3000, _seed(12)))


def _lane_mass(w):
    # block_mass(): 32 lane sums in slot order, folded in lane order.
    acc = [0.0] * 32
    for k, x in enumerate(w):
        acc[k % 32] += x
    m = 0.0
    for a in acc:
        m += a
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_light_block(op, dtype):
    # Equal weights whose scaled masses all round below 1: the "no heavy slot" branch.
    for i in range(100):
        v = float(torch.tensor(0.01 + 0.0097 * i, dtype=dtype))
        if v * (8 / _lane_mass([v] * 8)) < 1.0:
            break
    else:
        pytest.skip("no all-light block found")
    w = torch.full((8,), v, dtype=dtype, device=DEV)
    assert torch.equal(op(w, 500, _seed(3)).cpu(), _native(w, 500, _seed(3)))


def test_all_light_top(op):
    # Four equal blocks whose scaled masses all round below 1 at the top level.
    v = 0.763774618976614
    mass = _lane_mass([v] * 4096)
    total = 0.0
    for _ in range(4):
        total += mass
    assert mass * (4 / total) < 1.0
    w = torch.full((4 * 4096,), v, dtype=torch.float64, device=DEV)
    assert torch.equal(op(w, 2000, _seed(-8)).cpu(), _native(w, 2000, _seed(-8)))


def _philox(seed, index, stream):
    # philox_draw() of csrc/common/philox.h, to aim weights at a given draw.
    m32 = 0xFFFFFFFF
    c = [index & m32, (index >> 32) & m32, stream, 0]
    k0, k1 = seed & m32, (seed >> 32) & m32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & m32, (p0 >> 32) ^ c[3] ^ k1, p0 & m32]
        k0, k1 = (k0 + 0x9E3779B9) & m32, (k1 + 0xBB67AE85) & m32
    return c


@pytest.mark.parametrize("seed", [11, -5, 2**40 + 3])
def test_tie_refinement_local(op, seed):
    # Draw 0 hits a light slot whose threshold's top 32 bits equal its word 3,
    # so the slot is decided by stream 1 (accept_local's refinement).
    v = _philox(seed, 0, 0)
    slot = v[2] >> 31  # L = 2: the slot is the top bit of word 2
    own = (v[3] + 0.5) / 2**32  # thr52 = v3 * 2^20 + 2^19, masses sum to exactly 2
    w = torch.zeros(2, dtype=torch.float64)
    w[slot], w[1 - slot] = own, 2.0 - own
    w = w.to(DEV)
    out = op(w, 64, _seed(seed))
    assert torch.equal(out.cpu(), _native(w, 64, _seed(seed)))
    refined = (_philox(seed, 0, 1)[1] >> 12) < 2**19
    assert int(out[0]) == (slot if refined else 1 - slot)


@pytest.mark.parametrize("seed", [7, -123456789])
def test_tie_refinement_top(op, seed):
    # Draw 0 picks a block whose top-level threshold's high word equals its word 1.
    v = _philox(seed, 0, 0)
    blk = v[0] >> 31  # two blocks: the block is the top bit of word 0
    own = (v[1] + 0.5) / 2**32  # its share of the total, 2
    w = torch.empty(8192, dtype=torch.float64)
    # Equal weights inside a block keep its sweep trivial (cheap when interpreted).
    w[4096 * blk : 4096 * (blk + 1)] = own / 4096
    w[4096 * (1 - blk) : 4096 * (2 - blk)] = (2.0 - own) / 4096
    w = w.to(DEV)
    out = op(w, 64, _seed(seed))
    assert torch.equal(out.cpu(), _native(w, 64, _seed(seed)))
    refined = _philox(seed, 0, 1)[0] < 2**31
    assert (int(out[0]) >> 12) == (blk if refined else 1 - blk)


def test_same_seed_same_output(op):
    w = _weights(300, "power", torch.float64)
    a, b = op(w, 2000, _seed(42)), op(w, 2000, _seed(42))
    assert torch.equal(a, b)
    assert not torch.equal(a, op(w, 2000, _seed(43)))
    assert op(w, 0, _seed(42)).shape == (0,)


def test_public_api_matches_native():
    w = _weights(64, "zeros", torch.float32)
    outs = []
    for backend in ("triton", "native"):
        g = torch.Generator(device=DEV).manual_seed(5)
        outs.append(
            pada_ext.ops.sample_with_replacement(w, 777, generator=g, backend=backend).cpu()
        )
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("n,dtype", [(50, torch.float64), (300, torch.float32)])
def test_chi_square(op, n, dtype):
    scipy_stats = pytest.importorskip("scipy.stats")
    # A power law with every third weight zero: expected counts stay >= 5.
    w = torch.arange(1, n + 1, dtype=torch.float64) ** -0.8
    w[::3] = 0.0
    w = w.to(dtype=dtype, device=DEV)
    m = 20000
    counts = torch.bincount(op(w, m, _seed(2024)).cpu(), minlength=n).double()
    prob = w.double().cpu() / w.double().sum().cpu()
    assert counts[prob == 0].sum() == 0, "a zero weight was drawn"
    nz = prob > 0
    expected = prob[nz] * m
    assert expected.min() >= 5  # chi-square is valid
    p_value = scipy_stats.chisquare(counts[nz].numpy(), expected.numpy()).pvalue
    assert p_value > 1e-3


_NAN, _INF = float("nan"), float("inf")


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
def test_bad_weights_raise_like_cpu(op, values, dtype, match):
    w = torch.tensor(values, dtype=dtype, device=DEV)
    with pytest.raises(ValueError, match=match) as got:
        op(w, 10, _seed(1))
    with pytest.raises(ValueError) as want:
        _native(w, 10, _seed(1))
    assert str(got.value) == str(want.value).splitlines()[0]


def test_first_bad_index_across_blocks(op):
    # NaN blocks have no table to build, so two 4096-slot blocks stay cheap.
    w = torch.ones(8192, dtype=torch.float64)
    w[[7000, 5000]] = _NAN
    with pytest.raises(ValueError, match=r"weights\[5000\] is NaN"):
        op(w.to(DEV), 10, _seed(1))
    w[4095] = -_INF
    with pytest.raises(ValueError, match=r"weights\[4095\] is infinite \(-inf\)"):
        op(w.to(DEV), 10, _seed(1))


def test_bad_arguments(op):
    w = torch.ones(4, device=DEV)
    with pytest.raises(ValueError, match="1-D"):
        op(torch.ones(2, 2, device=DEV), 3, _seed(0))
    with pytest.raises(ValueError, match="empty"):
        op(torch.ones(0, device=DEV), 3, _seed(0))
    with pytest.raises(TypeError, match="float32 or float64"):
        op(torch.ones(4, dtype=torch.float16, device=DEV), 3, _seed(0))
    with pytest.raises(ValueError, match="num_samples"):
        op(w, -1, _seed(0))
    with pytest.raises(ValueError, match="one-element int64"):
        op(w, 3, torch.tensor([1, 2], device=DEV))


def test_opcheck(op):
    w = _weights(40, "zeros", torch.float64)
    torch.library.opcheck(op, (w, 100, _seed(9)))


def test_torch_compile_fullgraph(op):
    # aot_eager: traces through the fake implementation without compiling C++ (slow here).
    w = _weights(40, "uniform", torch.float64)

    @torch.compile(fullgraph=True, backend="aot_eager", dynamic=True)
    def f(w, seed):
        return op(w * 2.0, 50, seed)

    assert torch.equal(f(w, _seed(3)).cpu(), _native(w * 2.0, 50, _seed(3)))


@pytest.mark.parametrize(
    "weights",
    [
        [1e-320, 0.0, 3e-320, 0.0],  # subnormal total: T / total overflows
        [1e-320, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-321],
    ],
)
def test_subnormal_mass_bit_identical(op, weights):
    w = torch.tensor(weights, dtype=torch.float64, device=DEV)
    seed = _seed(31)
    got = op(w, 2000, seed).cpu()
    torch.testing.assert_close(got, _native(w, 2000, seed), rtol=0, atol=0)
    assert set(got.tolist()) <= {i for i, x in enumerate(weights) if x > 0}
