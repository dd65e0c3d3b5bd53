"""cross_entropy_with_grad_norm against torch's cross-entropy (loss and gradient)
and the float64 reference (gradient norm), on every backend available here."""

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_triton, triton_device

from pada_ext.ops import cross_entropy_with_grad_norm as xent
from pada_ext.reference.cross_entropy_with_grad_norm import grad_norm as ref_norm

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Against torch on float64-upcast logits the kernels only differ by float32
# accumulation and the final rounding to the dtype. torch in the dtype itself is
# less accurate (half log-probs; float32 sums over 256k classes): looser.
TOL = {
    torch.float32: dict(rtol=2e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),
}
TOL_SAME_DTYPE = {
    torch.float32: dict(rtol=1e-4, atol=5e-5),
    torch.float16: dict(rtol=5e-3, atol=3e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
}
NORM_TOL = dict(rtol=1e-4, atol=1e-6)


def make_case(n, c, dtype, ignore_index=-100, n_ignored=0, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * scale).to(dtype)
    target = torch.randint(0, c, (n,), generator=g)
    target[:n_ignored] = ignore_index
    return logits, target


def check(logits, target, reduction="mean", ignore_index=-100, eps=0.0, backend=None):
    """Loss and grad vs torch (float64 upcast and same dtype), norm vs reference."""
    dtype = logits.dtype
    x = logits.detach().clone().requires_grad_()
    loss, norm = xent(
        x, target, reduction=reduction, ignore_index=ignore_index, label_smoothing=eps,
        backend=backend,
    )  # fmt: skip
    kw = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=eps)
    x64 = logits.detach().double().requires_grad_()
    want = F.cross_entropy(x64, target.long(), **kw)
    xs = logits.detach().clone().requires_grad_()
    want_same = F.cross_entropy(xs, target.long(), **kw)
    assert loss.dtype == dtype and loss.shape == want.shape
    assert norm.dtype == torch.float32 and norm.shape == (logits.shape[0],)
    assert not norm.requires_grad
    torch.testing.assert_close(loss, want.to(dtype), equal_nan=True, **TOL[dtype])
    # torch's half sums can overflow where float32 accumulation does not.
    overflow = ~torch.isfinite(want_same) & torch.isfinite(want)
    want_same = torch.where(overflow, loss.detach(), want_same)
    torch.testing.assert_close(loss, want_same, equal_nan=True, **TOL_SAME_DTYPE[dtype])
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (loss.double() * w).sum().backward()
    (want * w).sum().backward()
    (want_same.float() * w).sum().backward()
    torch.testing.assert_close(x.grad, x64.grad.to(dtype), equal_nan=True, **TOL[dtype])
    if not overflow.any():  # torch's gradient of an overflowed loss is off too
        torch.testing.assert_close(x.grad, xs.grad, equal_nan=True, **TOL_SAME_DTYPE[dtype])
    torch.testing.assert_close(
        norm, ref_norm(logits, target, ignore_index, eps), equal_nan=True, **NORM_TOL
    )
    return loss, norm


# The CPU kernels switch layouts by C: rows of <= 16 (backward) or <= 128
# (forward) classes run 16 rows at a time, one per vector lane (N = 37 leaves
# a partial group); longer rows run in vectors of 16 with an overlapping last
# one (17, 129, 1000), in chunks of 2048 (2049: a last chunk of one element;
# 4097, 2048 + 16).
CLASSES = [1, 2, 3, 10, 16, 17, 100, 128, 129, 1000, 2049, 2064, 4097]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("n", [0, 1, 37])
def test_matches_torch(n, c, dtype, reduction):
    logits, target = make_case(n, c, dtype, n_ignored=min(n, 2) if n > 1 else 0)
    check(logits, target, reduction)


@pytest.mark.parametrize("c", CLASSES)
def test_target_at_every_position(c):
    """The target is left out of the sums wherever it falls: first, last, in a tail."""
    n = min(c, 40)
    logits, _ = make_case(n, c, torch.float32, scale=6.0)
    target = torch.linspace(0, c - 1, n).round().long()
    target[-1] = c - 1
    check(logits, target, "none", eps=0.05)
    check(logits, target, "mean")


@pytest.mark.parametrize("eps", [0.1, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 17, 130, 4097])
def test_label_smoothing_with_ignored_rows(c, dtype, reduction, eps):
    logits, target = make_case(7, c, dtype, n_ignored=3)
    check(logits, target, reduction, eps=eps)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_ignore_index_in_range(reduction):
    logits, target = make_case(64, 10, torch.float32)
    check(logits, target, reduction, ignore_index=3, eps=0.2)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_all_rows_ignored(eps):
    logits, target = make_case(5, 7, torch.float32, n_ignored=5)
    loss, norm = check(logits, target, "mean", eps=eps)
    assert torch.isnan(loss)  # 0 / 0, as torch
    assert torch.equal(norm, torch.zeros(5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_huge_class_count(dtype):
    logits, target = make_case(2, 262147, dtype)
    target[1] = 262146  # the target sits in the last, partial chunk
    check(logits, target, "mean", eps=0.1)
    check(logits, target, "none")


def _strided_copy(logits, layout):
    n, c = logits.shape
    if layout == "class_stride":
        return logits.t().contiguous().t()
    if layout == "row_stride":
        return torch.cat([logits, logits], dim=1)[:, :c]
    return torch.stack([logits, logits], dim=1).reshape(2 * n, c)[::2]  # every other row


@pytest.mark.parametrize(
    "c,dtype",
    [(7, torch.float32), (33, torch.float16), (300, torch.float32), (2100, torch.bfloat16)],
)
@pytest.mark.parametrize("layout", ["class_stride", "row_stride", "every_other_row"])
def test_non_contiguous_logits(layout, c, dtype):
    logits, target = make_case(19, c, dtype, n_ignored=2)
    strided = _strided_copy(logits, layout)
    assert not strided.is_contiguous() and torch.equal(strided, logits)
    check(strided, target, "mean", eps=0.05)


@pytest.mark.parametrize("c", [10, 300])
def test_thread_count_invariant(c):
    """Rows are independent and the loss is reduced in one fixed order: bitwise equal."""
    n = 2 * 32768 // c + 37  # more rows than one thread's share (grain: 32768 elements)
    logits, target = make_case(n, c, torch.float32, n_ignored=5)
    results = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            x = logits.clone().requires_grad_()
            loss, norm = xent(x, target)
            loss.backward()
            results.append((loss.detach(), norm, x.grad))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_int32_target():
    logits, target = make_case(7, 5, torch.float32)
    check(logits, target.int(), "sum")


def test_confident_rows_keep_relative_accuracy():
    # ||p - onehot||^2 = sum p^2 - 2 p_y + 1 would return noise here (and so
    # does softmax - onehot in float64 beyond margin ~35); the kernels don't.
    # Zeros but z_y = M: ||p - onehot|| = sqrt(C (C - 1)) / (e^M + C - 1).
    # (Norms below ~1e-18 underflow in float32 squares: irrelevant as scores.)
    c, margin = 1000, torch.tensor([5.0, 10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    target = torch.arange(5)
    logits = torch.zeros(5, c)
    logits[target, target] = margin.float()
    _, norm = xent(logits, target)
    want = (c * (c - 1)) ** 0.5 / (torch.exp(margin) + c - 1)
    assert want[-1] < 1e-14
    torch.testing.assert_close(norm, want.float(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("c", [9, 300, 2100])
def test_non_finite_logits(c, eps):
    """NaN/+inf rows: loss NaN like torch, norm NaN; -inf logits are masks and stay exact."""
    logits, target = make_case(6, c, torch.float32)
    target[:] = 4
    logits[0, c - 1] = float("nan")  # the last element: a tail vector on long rows
    logits[1, 5] = float("inf")
    logits[2] = float("-inf")
    logits[3, :4] = float("-inf")  # masked classes, target finite
    logits[4, 4] = float("-inf")  # target masked: infinite loss, finite gradient
    loss, norm = check(logits, target, "none", eps=eps)
    assert torch.isnan(loss[:3]).all()
    if eps == 0.0:
        assert torch.isfinite(loss[3]) and torch.isinf(loss[4])
    else:  # smoothing puts eps / C on the masked classes: log 0
        assert torch.isinf(loss[3:5]).all()
    assert torch.isnan(norm[:3]).all() and (norm[3:] > 0).all()


def test_errors():
    logits, target = make_case(4, 5, torch.float32)
    bad = target.clone()
    bad[2] = 5
    with pytest.raises(ValueError, match=r"target\[2\] = 5"):
        xent(logits, bad)
    bad[2] = -1
    with pytest.raises(ValueError, match=r"target\[2\] = -1"):
        torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, bad, 1, -100, 0.0)
    with pytest.raises(ValueError, match="shape"):
        xent(logits, target[:3])
    with pytest.raises(ValueError, match="2-D"):
        xent(logits[None], target)
    with pytest.raises(TypeError, match="class indices"):
        xent(logits, target.float())
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        xent(logits.double(), target)
    with pytest.raises(ValueError, match="reduction"):
        xent(logits, target, reduction="max")
    with pytest.raises(ValueError, match="label_smoothing"):
        xent(logits, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="meta"):
        xent(logits, target.to("meta"))
    with pytest.raises(ValueError, match="2-D"):
        torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits[0], target, 1, -100, 0.0)


def _opcheck_samples():
    cases = [
        (7, 5, torch.float32, 0.0, 1),
        (3, 4097, torch.bfloat16, 0.1, 0),
        (6, 3, torch.half, 0.2, 2),
    ]
    for n, c, dtype, eps, reduction in cases:
        logits, target = make_case(n, c, dtype, n_ignored=1)
        yield logits.requires_grad_(), target, eps, reduction


@pytest.mark.parametrize("ns", ["pada", pytest.param("pada_triton", marks=requires_triton)])
def test_opcheck(ns):
    if ns == "pada_triton":
        from pada_ext.triton import cross_entropy_with_grad_norm  # noqa: F401
    fwd = getattr(torch.ops, ns).cross_entropy_with_grad_norm_fwd
    bwd = getattr(torch.ops, ns).cross_entropy_with_grad_norm_bwd
    for logits, target, eps, reduction in _opcheck_samples():
        torch.library.opcheck(fwd, (logits, target, reduction, -100, eps))
        loss, _, lse = fwd(logits.detach(), target, reduction, -100, eps)
        grad = torch.randn(loss.shape).to(logits.dtype)
        torch.library.opcheck(bwd, (grad, logits.detach(), target, lse, reduction, -100, eps))


def test_bwd_errors():
    logits, target = make_case(4, 5, torch.float32)
    _, _, lse = torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, target, 0, -100, 0.0)
    bwd = torch.ops.pada.cross_entropy_with_grad_norm_bwd
    with pytest.raises(ValueError, match="scalar for reduction mean"):
        bwd(torch.ones(4), logits, target, lse, 1, -100, 0.0)
    with pytest.raises(ValueError, match=r"must be \[4\] for reduction none"):
        bwd(torch.ones(()), logits, target, lse, 0, -100, 0.0)
    with pytest.raises(ValueError, match="reduction must be 0"):
        bwd(torch.ones(()), logits, target, lse, 3, -100, 0.0)
    with pytest.raises(TypeError, match="lse must be float32"):
        bwd(torch.ones(()), logits, target, lse.double(), 1, -100, 0.0)


def test_backward_twice_and_unused_loss():
    """The saved state survives retain_graph; the norm carries no gradient."""
    logits, target = make_case(5, 7, torch.float32)
    x = logits.clone().requires_grad_()
    loss, norm = xent(x, target, reduction="sum")
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    assert norm.grad_fn is None and not norm.requires_grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("c", [10, 300])
def test_double_backward(c, reduction):
    """create_graph=True gives a differentiable gradient, as torch's (a gradient penalty)."""
    logits, target = make_case(9, c, torch.float32, n_ignored=2)
    grads = []
    for fn in (
        lambda x: xent(x, target, reduction=reduction, label_smoothing=0.1)[0],
        lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=0.1),
    ):
        x = logits.clone().requires_grad_()
        loss = fn(x)
        w = torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)
        (g,) = torch.autograd.grad((loss * w).sum(), x, create_graph=True)
        (g.square().sum() + (loss * w).sum()).backward()
        grads.append((g.detach(), x.grad))
    for ours, torchs in zip(*grads):
        torch.testing.assert_close(ours, torchs, rtol=1e-4, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


def test_inference_mode_and_no_grad():
    logits, target = make_case(5, 7, torch.float32)
    x = logits.clone().requires_grad_()
    want, want_norm = xent(logits, target)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            loss, norm = xent(x, target)
        assert not loss.requires_grad
        torch.testing.assert_close(loss, want)
        torch.testing.assert_close(norm, want_norm)


@pytest.mark.parametrize(
    "reduction,compiler", [("mean", "aot_eager"), ("none", "aot_eager"), ("sum", "inductor")]
)
def test_torch_compile_fullgraph(reduction, compiler):
    """Through the C++ autograd kernel and the fake kernels, forward and backward."""
    torch._dynamo.reset()

    def step(x, t):
        loss, norm = xent(x, t, reduction=reduction, label_smoothing=0.1)
        return loss.sum(), norm

    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    logits, target = make_case(8, 11, torch.float32, n_ignored=1)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    l1, n1 = compiled(x1, target)
    l2, n2 = step(x2, target)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(n1, n2)
    torch.testing.assert_close(x1.grad, x2.grad)


# Triton under the interpreter: ~4 ms per program, so grids of <= 64 rows.
@requires_triton
@pytest.mark.triton
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(0, 5), (1, 2), (7, 3), (16, 1000), (5, 4097)])
def test_triton_matches_torch(n, c, dtype, reduction):
    logits, target = make_case(n, c, dtype, n_ignored=min(n, 2) if n > 1 else 0)
    dev = triton_device()
    check(logits.to(dev), target.to(dev), reduction, eps=0.1 if c > 3 else 0.0, backend="triton")


@requires_triton
@pytest.mark.triton
def test_triton_edge_cases():
    dev = triton_device()
    logits, target = make_case(2, 262147, torch.float32)
    check(logits.to(dev), target.to(dev), "mean", backend="triton")
    logits, target = make_case(6, 9, torch.float32)
    target[:] = 4
    logits[0, 2], logits[1, 5], logits[2] = float("nan"), float("inf"), float("-inf")
    logits[3, :4], logits[4, 4] = float("-inf"), float("-inf")
    for eps in (0.0, 0.1):
        _, norm = check(logits.to(dev), target.to(dev), "none", eps=eps, backend="triton")
        assert torch.isnan(norm[:3].cpu()).all() and (norm[3:].cpu() > 0).all()
    strided = _strided_copy(logits.nan_to_num(0.0, 0.0, 0.0), "row_stride")
    check(strided.to(dev), target.to(dev), "sum", eps=0.3, ignore_index=4, backend="triton")
    if dev == "cpu":
        bad = target.clone()
        bad[3] = 9
        with pytest.raises(ValueError, match=r"target\[3\] = 9"):
            xent(logits, bad, backend="triton")
