"""cross_entropy_with_grad_norm against torch's cross-entropy (loss and gradient)
and the float64 reference (gradient norm), on every (device, backend) available
here: the compiled CPU and CUDA kernels, and Triton (on the GPU, or on CPU
tensors in the interpreter, where grids are kept to a few dozen rows)."""

import contextlib
import sys

import conftest
import pytest
import torch
import torch.nn.functional as F
from conftest import BACKEND_DEVICES, DEVICES, requires_cuda, requires_triton

from pada_ext.ops import cross_entropy_with_grad_norm as xent
from pada_ext.reference.cross_entropy_with_grad_norm import grad_norm as ref_norm

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
XENT_OPS = ("cross_entropy_with_grad_norm_fwd", "cross_entropy_with_grad_norm_bwd")
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


def make_case(n, c, dtype, ignore_index=-100, n_ignored=0, seed=0, scale=3.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * scale).to(dtype)
    target = torch.randint(0, c, (n,), generator=g)
    target[:n_ignored] = ignore_index
    return logits.to(device), target.to(device)


def interpreted(device, backend):
    """Triton on CPU tensors: ~4 ms a program, so only small grids."""
    return backend == "triton" and torch.device(device).type == "cpu"


def backend_cases(cases, interpretable=lambda *case: True):
    """(device, backend, *case) params for every entry of BACKEND_DEVICES; under
    the Triton interpreter only the cases that `interpretable` accepts."""
    params = []
    for p in BACKEND_DEVICES:
        device, backend = p.values
        for case in cases:
            case = case if isinstance(case, tuple) else (case,)
            if interpreted(device, backend) and not interpretable(*case):
                continue
            ids = "-".join([p.id, *map(str, case)])
            params.append(pytest.param(device, backend, *case, marks=p.marks, id=ids))
    return params


BACKENDS = backend_cases([()])  # (device, backend) alone


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
    w = w.to(logits.device)
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


def test_errors():
    logits, target = make_case(4, 5, torch.float32)
    bad = target.clone()
    bad[2] = 5
    with pytest.raises(ValueError, match=r"target\[2\] = 5"):
        xent(logits, bad)
    bad[2] = -1
    with pytest.raises(ValueError, match=r"target\[2\] = -1"):
        torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, bad, 1, -100, 0.0)
    with pytest.raises(ValueError, match=r"target must have shape \[4\].*got \[3\]"):
        xent(logits, target[:3])
    with pytest.raises(ValueError, match=r"target must have shape \[1, 5\]"):
        xent(logits[None], target)  # [1, 4, 5] logits: 5 positions of 4 classes
    with pytest.raises(TypeError, match="integer"):
        xent(logits.long(), target)
    with pytest.raises(ValueError, match="reduction"):
        xent(logits, target, reduction="max")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        xent(logits, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="meta"):
        xent(logits, target.to("meta"))
    with pytest.raises(ValueError, match="2-D"):
        torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits[0], target, 1, -100, 0.0)


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


def _strided_copy(logits, layout):
    n, c = logits.shape
    if layout == "class_stride":
        return logits.t().contiguous().t()
    if layout == "row_stride":
        return torch.cat([logits, logits], dim=1)[:, :c]
    if layout == "odd_offset":  # rows start at odd element offsets: no aligned vectors
        wide = torch.zeros(n, c + 1, dtype=logits.dtype, device=logits.device)
        wide[:, 1:] = logits
        return wide[:, 1:]
    return torch.stack([logits, logits], dim=1).reshape(2 * n, c)[::2]  # every other row


# The CPU kernels switch layouts by C: rows of <= 16 (backward) or <= 128
# (forward) classes run 16 rows at a time, one per vector lane (N = 37 leaves
# a partial group); longer rows run in vectors of 16 with an overlapping last
# one (17, 129, 1000), in chunks of 2048 (2049: a last chunk of one element;
# 4097, 2048 + 16). The CUDA kernels give rows of <= 1024 classes one warp
# (31, 32, 33: a partial, full and spilling warp; 1024, 1025: the switch to a
# block per row). Triton reads chunks of up to 4096 classes.
CLASSES = [1, 2, 3, 10, 16, 17, 31, 32, 33, 100, 128, 129, 1000, 1024, 1025, 2049, 2064, 4097]
INTERPRETED_CLASSES = (1, 2, 17, 33, 1000, 4097)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 37])
@pytest.mark.parametrize(
    "device,backend,c", backend_cases(CLASSES, lambda c: c in INTERPRETED_CLASSES)
)
def test_matches_torch(device, backend, c, n, dtype, reduction):
    logits, target = make_case(n, c, dtype, n_ignored=min(n, 2) if n > 1 else 0, device=device)
    check(logits, target, reduction, backend=backend)


@pytest.mark.parametrize(
    "device,backend,c", backend_cases(CLASSES, lambda c: c in INTERPRETED_CLASSES)
)
def test_target_at_every_position(device, backend, c):
    """The target is left out of the sums wherever it falls: first, last, in a tail."""
    n = min(c, 40)
    logits, _ = make_case(n, c, torch.float32, scale=6.0, device=device)
    target = torch.linspace(0, c - 1, n).round().long().to(device)
    target[-1] = c - 1
    check(logits, target, "none", eps=0.05, backend=backend)
    check(logits, target, "mean", backend=backend)


@pytest.mark.parametrize("eps", [0.1, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device,backend,c", backend_cases([3, 17, 130, 1025, 4097]))
def test_label_smoothing_with_ignored_rows(device, backend, c, dtype, reduction, eps):
    logits, target = make_case(7, c, dtype, n_ignored=3, device=device)
    check(logits, target, reduction, eps=eps, backend=backend)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_ignore_index_in_range(device, backend, reduction):
    logits, target = make_case(64, 10, torch.float32, device=device)
    check(logits, target, reduction, ignore_index=3, eps=0.2, backend=backend)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("device,backend,c", backend_cases([7, 2000]))
def test_all_rows_ignored(device, backend, c, eps):
    logits, target = make_case(5, c, torch.float32, n_ignored=5, device=device)
    loss, norm = check(logits, target, "mean", eps=eps, backend=backend)
    assert torch.isnan(loss)  # 0 / 0, as torch
    assert torch.equal(norm, torch.zeros(5, device=device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_huge_class_count(device, backend, dtype):
    if dtype == torch.float16 and device == "cpu":
        pytest.skip("torch's own CPU half cross-entropy is the weak side at 262k classes")
    logits, target = make_case(2, 262147, dtype, device=device)
    target[1] = 262146  # the target sits in the last, partial chunk
    check(logits, target, "mean", eps=0.1, backend=backend)
    check(logits, target, "none", backend=backend)
    check(logits, target, "sum", ignore_index=int(target[0]), backend=backend)


LAYOUTS = ["class_stride", "row_stride", "every_other_row", "odd_offset"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "device,backend,c,dtype",
    backend_cases(
        [(7, torch.float32), (33, torch.float16), (300, torch.float32), (2100, torch.bfloat16)]
    ),
)
def test_non_contiguous_logits(device, backend, c, dtype, layout):
    logits, target = make_case(19, c, dtype, n_ignored=2, device=device)
    strided = _strided_copy(logits, layout)
    assert not strided.is_contiguous() and torch.equal(strided, logits)
    check(strided, target, "mean", eps=0.05, backend=backend)
    check(strided, target, "none", backend=backend)


def _check_confident(device, backend, c):
    # ||p - onehot||^2 = sum p^2 - 2 p_y + 1 would return noise here (and so
    # does softmax - onehot in float64 beyond margin ~35); the kernels don't.
    # Zeros but z_y = M: ||p - onehot|| = sqrt(C (C - 1)) / (e^M + C - 1).
    # (Norms below ~1e-18 underflow in float32 squares: irrelevant as scores.)
    margin = torch.tensor([5.0, 10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    target = torch.tensor([0, 1, c // 2, c - 2, c - 1])
    logits = torch.zeros(5, c)
    logits[torch.arange(5), target] = margin.float()
    _, norm = xent(logits.to(device), target.to(device), backend=backend)
    want = (c * (c - 1)) ** 0.5 / (torch.exp(margin) + c - 1)
    assert want[-1] < 1e-13
    torch.testing.assert_close(norm.cpu(), want.float(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("device,backend,c", backend_cases([33, 1000, 5000]))
def test_confident_rows_keep_relative_accuracy(device, backend, c):
    _check_confident(device, backend, c)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("device,backend,c", backend_cases([9, 31, 300, 2100, 4097]))
def test_non_finite_logits(device, backend, c, eps):
    """NaN/+inf rows: loss NaN like torch, norm NaN; -inf logits are masks and stay exact."""
    logits, target = make_case(7, c, torch.float32)
    target[:] = 4
    logits[0, c - 1] = float("nan")  # the last element: a tail vector on long rows
    logits[1, 5] = float("inf")
    logits[2] = float("-inf")
    logits[3, :4] = float("-inf")  # masked classes, target finite
    logits[4, 4] = float("-inf")  # target masked: infinite loss, finite gradient
    logits[6, 4] = float("nan")  # NaN on the target itself
    logits, target = logits.to(device), target.to(device)
    loss, norm = check(logits, target, "none", eps=eps, backend=backend)
    loss, norm = loss.cpu(), norm.cpu()
    assert torch.isnan(loss[[0, 1, 2, 6]]).all()
    if eps == 0.0:
        assert torch.isfinite(loss[3]) and torch.isinf(loss[4])
    else:  # smoothing puts eps / C on the masked classes: log 0
        assert torch.isinf(loss[3:5]).all()
    assert torch.isnan(norm[[0, 1, 2, 6]]).all() and (norm[3:6] > 0).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_int32_target(device, backend):
    logits, target = make_case(7, 5, torch.float32, device=device)
    check(logits, target.int(), "sum", backend=backend)


def _opcheck_samples(device):
    cases = [
        (7, 5, torch.float32, 0.0, 1),
        (3, 4097, torch.bfloat16, 0.1, 0),
        (6, 3, torch.half, 0.2, 2),
        (9, 1100, torch.float32, 0.0, 0),
    ]
    for n, c, dtype, eps, reduction in cases:
        logits, target = make_case(n, c, dtype, n_ignored=1, device=device)
        yield logits.requires_grad_(), target, eps, reduction


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    """The pada:: ops with the kernels of `backend` (the Triton ones selected)."""
    fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd
    bwd = torch.ops.pada.cross_entropy_with_grad_norm_bwd
    selected = (
        conftest.triton_selected(*XENT_OPS) if backend == "triton" else contextlib.nullcontext()
    )
    with selected:
        for logits, target, eps, reduction in _opcheck_samples(device):
            torch.library.opcheck(fwd, (logits, target, reduction, -100, eps))
            loss, _, lse = fwd(logits.detach(), target, reduction, -100, eps)
            grad = torch.randn(loss.shape).to(device, logits.dtype)
            torch.library.opcheck(bwd, (grad, logits.detach(), target, lse, reduction, -100, eps))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backward_twice_and_unused_loss(device, backend):
    """The saved state survives retain_graph; the norm carries no gradient."""
    logits, target = make_case(5, 7, torch.float32, device=device)
    x = logits.clone().requires_grad_()
    loss, norm = xent(x, target, reduction="sum", backend=backend)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    assert norm.grad_fn is None and not norm.requires_grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("device,backend,c", backend_cases([10, 300, 2000]))
def test_double_backward(device, backend, c, reduction):
    """create_graph=True gives a differentiable gradient, as torch's (a gradient penalty)."""
    logits, target = make_case(9, c, torch.float32, n_ignored=2, device=device)
    grads = []
    for fn in (
        lambda x: xent(x, target, reduction=reduction, label_smoothing=0.1, backend=backend)[0],
        lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=0.1),
    ):
        x = logits.clone().requires_grad_()
        loss = fn(x)
        w = torch.linspace(0.5, 1.5, loss.numel(), device=device).reshape(loss.shape)
        (g,) = torch.autograd.grad((loss * w).sum(), x, create_graph=True)
        (g.square().sum() + (loss * w).sum()).backward()
        grads.append((g.detach(), x.grad))
    for ours, torchs in zip(*grads):
        torch.testing.assert_close(ours, torchs, rtol=1e-4, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_inference_mode_and_no_grad(device, backend):
    logits, target = make_case(5, 7, torch.float32, device=device)
    x = logits.clone().requires_grad_()
    want, want_norm = xent(logits, target, backend=backend)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            loss, norm = xent(x, target, backend=backend)
        assert not loss.requires_grad
        torch.testing.assert_close(loss, want)
        torch.testing.assert_close(norm, want_norm)


def _compile_cases():
    cases = [
        pytest.param("cpu", "native", "mean", "aot_eager", id="cpu-native-mean-aot_eager"),
        pytest.param("cpu", "native", "none", "aot_eager", id="cpu-native-none-aot_eager"),
        pytest.param("cpu", "native", "sum", "inductor", id="cpu-native-sum-inductor"),
    ]
    for p in BACKEND_DEVICES:
        device, backend = p.values
        if device == "cpu" and backend == "native":
            continue
        # Inductor on the GPU; the interpreter gains nothing from compiling the rest.
        compiler = "aot_eager" if interpreted(device, backend) else "inductor"
        for reduction in ("mean", "none") if compiler == "inductor" else ("mean",):
            cid = f"{p.id}-{reduction}-{compiler}"
            cases.append(pytest.param(device, backend, reduction, compiler, marks=p.marks, id=cid))
    return cases


@pytest.mark.parametrize("device,backend,reduction,compiler", _compile_cases())
def test_torch_compile_fullgraph(device, backend, reduction, compiler):
    """Through the autograd kernels and the fake kernels, forward and backward."""
    torch._dynamo.reset()

    def step(x, t):
        loss, norm = xent(x, t, reduction=reduction, label_smoothing=0.1, backend=backend)
        return loss.sum(), norm

    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    logits, target = make_case(8, 1100, torch.float32, n_ignored=1, device=device)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    l1, n1 = compiled(x1, target)
    l2, n2 = step(x2, target)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(n1, n2)
    torch.testing.assert_close(x1.grad, x2.grad)


@requires_triton
@pytest.mark.triton
def test_triton_bad_target_raises_on_cpu():
    if conftest.triton_device() != "cpu":
        pytest.skip("on CUDA a bad target is a device assert (TRITON_DEBUG=1)")
    logits, target = make_case(6, 9, torch.float32)
    bad = target.clone()
    bad[3] = 9
    with pytest.raises(ValueError, match=r"target\[3\] = 9"):
        xent(logits, bad, backend="triton")


# ---- CUDA only -------------------------------------------------------------

GPU_BACKENDS = [p for p in BACKENDS if p.values[0] == "cuda"] or [
    pytest.param("cuda", "native", marks=requires_cuda, id="cuda-native")
]


@requires_cuda
@pytest.mark.parametrize("device,backend", GPU_BACKENDS)
def test_no_host_sync(device, backend):
    """Forward, mean reduction and backward queue work without waiting for the GPU."""
    logits, target = make_case(37, 1025, torch.float32, n_ignored=3, device=device)
    x = logits.clone().requires_grad_()
    with conftest.no_sync(device):
        loss, norm = xent(x, target, reduction="mean", label_smoothing=0.1, backend=backend)
        loss.backward()
    check(logits, target, "mean", eps=0.1, backend=backend)


@requires_cuda
@pytest.mark.parametrize("device,backend", GPU_BACKENDS)
def test_mixed_devices_rejected(device, backend):
    logits, target = make_case(4, 5, torch.float32, device=device)
    with pytest.raises(ValueError, match="target is on cpu"):
        xent(logits, target.cpu(), backend=backend)
    if backend == "triton":
        fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd
        with pytest.raises(ValueError, match="(target|tensor 1) is on cpu"):
            with conftest.triton_selected(*XENT_OPS):
                fwd(logits, target.cpu(), 1, -100, 0.0)
    else:
        with pytest.raises(RuntimeError, match="target is on cpu"):
            torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, target.cpu(), 1, -100, 0.0)


@requires_cuda
@pytest.mark.parametrize("device,backend", GPU_BACKENDS)
def test_non_default_stream(device, backend):
    """Kernels run on the current stream: the logits written there after a
    long sleep are read only once ready (on another stream they would not be)."""
    logits, target = make_case(64, 3000, torch.float32, n_ignored=2, device=device)
    want_loss, want_norm = xent(logits, target, reduction="none", backend=backend)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU time before the logits exist
        x = (logits * 1.0).requires_grad_()
        loss, norm = xent(x, target, reduction="none", backend=backend)
        (loss.sum()).backward()
    stream.synchronize()
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(norm, want_norm)
    xs = logits.clone().requires_grad_()
    xent(xs, target, reduction="none", backend=backend)[0].sum().backward()
    torch.testing.assert_close(x.grad, xs.grad)


@conftest.requires_two_gpus
@pytest.mark.parametrize("backend", ["native", pytest.param("triton", marks=requires_triton)])
def test_second_gpu_while_first_is_current(backend):
    """Tensors on cuda:1 with cuda:0 current: the kernels run on cuda:1."""
    logits, target = make_case(40, 1500, torch.bfloat16, n_ignored=2)
    want_loss, want_norm = xent(logits, target, reduction="none")
    with torch.cuda.device(0):
        x = logits.to("cuda:1").requires_grad_()
        loss, norm = xent(x, target.to("cuda:1"), reduction="none", backend=backend)
        loss.float().sum().backward()
        assert loss.device == norm.device == x.grad.device == torch.device("cuda:1")
        torch.cuda.synchronize(1)
    torch.testing.assert_close(loss.cpu(), want_loss, **TOL_SAME_DTYPE[torch.bfloat16])
    torch.testing.assert_close(norm.cpu(), want_norm, **NORM_TOL)
    xc = logits.clone().requires_grad_()
    xent(xc, target, reduction="none")[0].float().sum().backward()
    torch.testing.assert_close(x.grad.cpu(), xc.grad, **TOL_SAME_DTYPE[torch.bfloat16])


def _large_bf16_case(device, backend, n, c):
    """Seeded bfloat16 logits (n, c) and targets, and the op's loss (as float32),
    norm and gradient of the summed loss."""
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(n, c, device=device, generator=g, dtype=torch.bfloat16)
    target = torch.randint(0, c, (n,), device=device, generator=g)
    x = logits.requires_grad_()
    loss, norm = xent(x, target, reduction="none", backend=backend)
    loss.float().sum().backward()
    return logits.detach(), target, loss.float(), norm, x.grad


def _check_rows(logits, target, loss, norm, grad, rows):
    """Loss, norm and gradient of `rows` against torch and the reference."""
    z = logits[rows].double().requires_grad_()
    want = F.cross_entropy(z, target[rows], reduction="none")
    want.sum().backward()
    torch.testing.assert_close(loss[rows], want.float(), rtol=1e-2, atol=1e-3)  # bf16 loss
    torch.testing.assert_close(norm[rows], ref_norm(logits[rows], target[rows]), **NORM_TOL)
    torch.testing.assert_close(grad[rows].float(), z.grad.float(), rtol=2e-2, atol=1e-4)


@pytest.mark.slow
@requires_cuda
@pytest.mark.parametrize("device,backend", GPU_BACKENDS)
@pytest.mark.parametrize("n,c", [(2_200_000, 1000), (66_000, 32_800)])
def test_more_than_2_to_31_elements(device, backend, n, c):
    """N * C > 2^31: element offsets must be 64-bit (short rows and long rows)."""
    assert n * c > 2**31
    logits, target, loss, norm, grad = _large_bf16_case(device, backend, n, c)
    rows = torch.cat([torch.arange(4), torch.arange(n - 4, n)]).to(device)
    _check_rows(logits, target, loss, norm, grad, rows)


@pytest.mark.slow
@requires_cuda
@pytest.mark.parametrize("device,backend", GPU_BACKENDS)
@pytest.mark.parametrize("n,c", [(9_000_000, 3), (1_100_000, 1025)])
def test_more_rows_than_one_grid(device, backend, n, c):
    """More row blocks than one launch's grid (2^20 blocks of 8 short rows or
    of one long row): the grid-stride loop reaches the last rows."""
    logits, target, loss, norm, grad = _large_bf16_case(device, backend, n, c)
    want = F.cross_entropy(logits.float(), target, reduction="none")
    torch.testing.assert_close(loss, want, rtol=1e-2, atol=1e-2)
    assert torch.isfinite(norm).all() and (norm > 0).all()
    rows = torch.cat([torch.arange(3), torch.arange(n - 9, n)]).to(device)
    _check_rows(logits, target, loss, norm, grad, rows)


# ---- Accuracy at large offsets (the loss from shifted values only) ----------


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e6, -1e6])
@pytest.mark.parametrize("device,backend,c", backend_cases([10, 1000, 4097]))
def test_offset_logits_keep_float32_accuracy(device, backend, c, offset, eps):
    """Logits shifted by a constant: loss, gradient and norm as accurate as
    torch's (lse - z_y formed directly was off by 5e-4 at 1e4, 3e-2 at 1e6),
    and every gradient row sums to 0 (it did not when exp(z - lse) was used)."""
    logits, target = make_case(8, c, torch.float32, n_ignored=1)
    logits = (logits + offset).to(device)
    target = target.to(device)
    x = logits.clone().requires_grad_()
    loss, norm = xent(x, target, reduction="none", label_smoothing=eps, backend=backend)
    loss.sum().backward()
    x64 = logits.double().requires_grad_()
    want = F.cross_entropy(x64, target, reduction="none", label_smoothing=eps)
    want.sum().backward()
    torch.testing.assert_close(loss.double(), want, rtol=1e-6, atol=3e-6)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-7)
    assert x.grad.double().sum(1).abs().max() < 1e-5
    torch.testing.assert_close(norm, ref_norm(logits, target, -100, eps), rtol=1e-5, atol=1e-7)


# ---- Autocast: float32, as F.cross_entropy ----------------------------------


AUTOCAST_DTYPES = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_autocast_runs_in_float32(device, backend, reduction, dtype):
    """Under autocast F.cross_entropy casts 16-bit logits to float32 (loss in
    float32, gradient in the logits' dtype): so does the op, on every backend."""
    dev = torch.device(device).type
    logits, target = make_case(40, 300, dtype, n_ignored=2, device=device)
    x = logits.clone().requires_grad_()
    xs = logits.clone().requires_grad_()
    with torch.autocast(dev, dtype=dtype):
        loss, norm = xent(x, target, reduction=reduction, backend=backend)
        want = F.cross_entropy(xs, target, reduction=reduction)
    assert loss.dtype == want.dtype == torch.float32
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm, ref_norm(logits, target), **NORM_TOL)
    loss.sum().backward()
    want.sum().backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, xs.grad, **TOL_SAME_DTYPE[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_kernel_of_the_native_op(device):
    """The op itself (as torch.compile or a C++ caller sees it) has the autocast kernel."""
    dev = torch.device(device).type
    logits, target = make_case(6, 9, torch.bfloat16, device=device)
    with torch.autocast(dev, dtype=torch.bfloat16):
        loss, _, _ = torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, target, 1, -100, 0.0)
    assert loss.dtype == torch.float32
    loss, _, _ = torch.ops.pada.cross_entropy_with_grad_norm_fwd(logits, target, 1, -100, 0.0)
    assert loss.dtype == torch.bfloat16  # autocast off: the logits' dtype


@pytest.mark.parametrize("device", DEVICES)
def test_float16_sum_of_a_large_batch(device):
    """The issue's case: float16 sum over 10000 x 1000. Under autocast torch
    gives 70688.5 (float32), and so must the op (it gave inf); without
    autocast torch's float16 result overflows to inf, and so does the op's."""
    dev = torch.device(device).type
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(10000, 1000, generator=g) * 3).half().to(device)
    target = torch.randint(0, 1000, (10000,), generator=g).to(device)
    with torch.autocast(dev, dtype=torch.float16):
        loss, _ = xent(logits, target, reduction="sum")
        want = F.cross_entropy(logits, target, reduction="sum")
    assert loss.dtype == want.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=0.0)
    loss, _ = xent(logits, target, reduction="sum")
    want = F.cross_entropy(logits, target, reduction="sum")
    assert loss.dtype == torch.float16
    torch.testing.assert_close(loss, want, equal_nan=True)  # both inf: 111923 > 65504


# ---- Drop-in for F.cross_entropy: weight, soft targets, K-dim, float64 ------


def _vs_torch(logits, target, backend, norm_want, weight=None, **kw):
    """Loss and gradient against F.cross_entropy (same dtype), the norm against `norm_want`."""
    x = logits.clone().requires_grad_()
    xs = logits.clone().requires_grad_()
    loss, norm = xent(x, target, weight, backend=backend, **kw)
    want = F.cross_entropy(xs, target, weight, **kw)
    assert loss.dtype == want.dtype and loss.shape == want.shape
    torch.testing.assert_close(loss, want, rtol=2e-5, atol=2e-6)
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(3)).to(want)
    (loss * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(x.grad, xs.grad, rtol=2e-5, atol=1e-6)
    assert not norm.requires_grad
    torch.testing.assert_close(norm, norm_want, rtol=1e-5, atol=1e-6, equal_nan=True)
    return loss, norm


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_class_weight(device, backend, eps, reduction):
    """weight= scales the loss as torch's does; the norm is that of the
    unweighted per-sample loss, the same as without weight."""
    logits, target = make_case(20, 7, torch.float32, n_ignored=3, device=device)
    weight = torch.rand(7, generator=torch.Generator().manual_seed(2)).to(device) + 0.5
    kw = dict(reduction=reduction, label_smoothing=eps)
    _, plain = xent(logits, target, backend=backend, **kw)
    _, norm = _vs_torch(logits, target, backend, ref_norm(logits, target, -100, eps), weight, **kw)
    torch.testing.assert_close(norm, plain, rtol=1e-5, atol=1e-6)


def _soft_norm(logits, probs, eps):
    """||p * sum(t) - t|| with t the smoothed probabilities, in float64."""
    p = torch.softmax(logits.double(), 1)
    t = probs.double() * (1 - eps) + eps / logits.shape[1]
    return torch.linalg.vector_norm(p * t.sum(1, keepdim=True) - t, dim=1).to(torch.float32)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_soft_targets(device, backend, reduction, eps, weighted):
    """Probabilities (mixup, distillation) and rows that do not sum to 1."""
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(12, 6, generator=g) * 3).to(device)
    probs = torch.softmax(torch.randn(12, 6, generator=g) * 2, 1)
    probs[0] *= 2.0  # torch does not require rows to sum to 1
    probs = probs.to(device)
    weight = (torch.rand(6, generator=g) + 0.5).to(device) if weighted else None
    _vs_torch(
        logits, probs, backend, _soft_norm(logits, probs, eps), weight,
        reduction=reduction, label_smoothing=eps,
    )  # fmt: skip
    # One-hot probabilities are the class-index case.
    target = torch.randint(0, 6, (12,), generator=g).to(device)
    one_hot = F.one_hot(target, 6).float()
    _, a = xent(logits, one_hot, label_smoothing=eps, backend=backend)
    _, b = xent(logits, target, label_smoothing=eps, backend=backend)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_k_dimensional(device, backend, dtype, reduction):
    """[N, C, d1, d2] (segmentation): one sample per position, grad_norm [N, d1, d2]."""
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(2, 5, 3, 4, generator=g) * 3).to(dtype).to(device)
    target = torch.randint(0, 5, (2, 3, 4), generator=g)
    target[0, 1, 2] = target[1, 0, 0] = -100
    target = target.to(device)
    x = logits.clone().requires_grad_()
    loss, norm = xent(x, target, reduction=reduction, label_smoothing=0.1, backend=backend)
    x64 = logits.double().requires_grad_()
    want = F.cross_entropy(x64, target, reduction=reduction, label_smoothing=0.1)
    assert loss.dtype == dtype and loss.shape == want.shape and norm.shape == (2, 3, 4)
    torch.testing.assert_close(loss, want.to(dtype), **TOL[dtype])
    loss.float().sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x.grad, x64.grad.to(dtype), **TOL[dtype])
    rows = logits.movedim(1, -1).reshape(-1, 5)
    want_norm = ref_norm(rows, target.reshape(-1), -100, 0.1).reshape(2, 3, 4)
    torch.testing.assert_close(norm, want_norm, **NORM_TOL)
    assert (norm[0, 1, 2] == 0) and (norm[1, 0, 0] == 0)
    # Soft targets of the same shape.
    probs = torch.softmax(torch.randn(2, 5, 3, 4, generator=g), 1).to(device)
    _, soft = xent(logits.float(), probs, backend=backend)
    p = torch.softmax(logits.double(), 1)
    soft_want = torch.linalg.vector_norm(p - probs.double(), dim=1).float()
    torch.testing.assert_close(soft, soft_want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_unbatched(device, backend):
    """[C] logits with a [] target, as F.cross_entropy takes them."""
    logits, target = make_case(1, 6, torch.float32, device=device)
    for reduction in ("mean", "none"):
        loss, norm = xent(logits[0], target[0], reduction=reduction, backend=backend)
        want = F.cross_entropy(logits[0], target[0], reduction=reduction)
        assert loss.shape == want.shape == () and norm.shape == ()
        torch.testing.assert_close(loss, want)
        torch.testing.assert_close(norm, ref_norm(logits, target)[0], **NORM_TOL)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_gradcheck(device, backend, soft):
    """float64 logits: a float64 loss and norm, and torch.autograd.gradcheck passes."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64).to(device)
    if soft:
        target = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1).to(device)
    else:
        target = torch.tensor([0, 3, -100, 1, 2]).to(device)
    x = logits.clone().requires_grad_()
    loss, norm = xent(x, target, label_smoothing=0.1, backend=backend)
    want = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert loss.dtype == norm.dtype == torch.float64
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    want_norm = ref_norm(logits, target, -100, 0.1)
    assert want_norm.dtype == torch.float64
    torch.testing.assert_close(norm, want_norm, rtol=1e-10, atol=1e-12)
    for reduction in ("mean", "none"):

        def f(z, reduction=reduction):
            return xent(z, target, reduction=reduction, label_smoothing=0.1, backend=backend)[0]

        assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_target_dtypes(device, backend):
    """int64 and uint8 as torch takes them, and int32; other dtypes a TypeError."""
    logits, target = make_case(9, 5, torch.float32, device=device)
    want = F.cross_entropy(logits, target)
    for dt in (torch.int64, torch.int32, torch.uint8):
        loss, norm = xent(logits, target.to(dt), backend=backend)
        torch.testing.assert_close(loss, want)
        torch.testing.assert_close(norm, ref_norm(logits, target), **NORM_TOL)
    for dt in (torch.int16, torch.int8, torch.bool):
        with pytest.raises(TypeError, match=r"target must hold class indices \(int64"):
            xent(logits, target.to(dt), backend=backend)


# ---- Errors at the call, the same for every backend -------------------------


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "reference")])
def test_argument_errors(device, backend):
    logits, target = make_case(4, 5, torch.float32, device=device)
    with pytest.raises(TypeError, match=r"target of dtype torch.float32 and shape \(4,\)"):
        xent(logits, target.float(), backend=backend)  # float labels: not class indices
    with pytest.raises(TypeError, match="target must be a Tensor, got list"):
        xent(logits, target.tolist(), backend=backend)
    with pytest.raises(TypeError, match="logits must be a Tensor, got list"):
        xent(logits.tolist(), target, backend=backend)
    with pytest.raises(TypeError, match="weight must be a Tensor or None, got list"):
        xent(logits, target, [1.0] * 5, backend=backend)
    with pytest.raises(TypeError, match="label_smoothing must be a float or a 0-dim"):
        xent(logits, target, label_smoothing=torch.tensor([0.1]), backend=backend)
    with pytest.raises(TypeError, match="label_smoothing must be a float, got '0.1'"):
        xent(logits, target, label_smoothing="0.1", backend=backend)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        xent(logits, target, ignore_index=1.0, backend=backend)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        xent(logits, target, label_smoothing=-0.5, backend=backend)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        xent(logits, target, torch.ones(5, device=device), label_smoothing=2.0, backend=backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_label_smoothing_tensor_is_a_float(device, backend):
    """A 0-dim tensor, as F.cross_entropy accepts it, gives the float's result."""
    logits, target = make_case(6, 5, torch.float32, device=device)
    a = xent(logits, target, label_smoothing=torch.tensor(0.1), backend=backend)
    b = xent(logits, target, label_smoothing=0.1, backend=backend)
    want = F.cross_entropy(logits, target, label_smoothing=torch.tensor(0.1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[0], want)


def _op_error_cases(n=4, c=5):
    logits, target = make_case(n, c, torch.float32)
    lse = torch.zeros(n, 2)
    fwd = [
        ((logits[0], target, 1, -100, 0.0), ValueError, "logits must be 2-D"),
        ((logits.double(), target, 1, -100, 0.0), TypeError, "float32, float16 or bfloat16"),
        ((logits, target.int(), 1, -100, 0.0), TypeError, "target must be int64, got"),
        ((logits, target[:3], 1, -100, 0.0), ValueError, r"target must have shape \[N\] = \[4\]"),
        ((logits, target, 3, -100, 0.0), ValueError, "reduction must be 0"),
        ((logits, target, 1, -100, 1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    ]
    bwd = [
        ((torch.ones(()), logits, target, lse[:, :1], 1, -100, 0.0), ValueError, r"\[4, 2\]"),
        ((torch.ones(()), logits, target, lse.double(), 1, -100, 0.0), TypeError, "float32"),
        ((torch.ones(4), logits, target, lse, 1, -100, 0.0), ValueError, "scalar for reduction"),
    ]
    return fwd, bwd


@pytest.mark.parametrize(
    "kernel", ["native", pytest.param("triton", marks=requires_triton), "fake"]
)
def test_op_validation_is_shared(kernel):
    """The op's compiled kernel, its Triton kernel and its fake (torch.compile,
    export) reject bad arguments with the same exception type and message."""
    from pada_ext import _triton_kernels

    fwd_cases, bwd_cases = _op_error_cases()
    fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd
    bwd = torch.ops.pada.cross_entropy_with_grad_norm_bwd
    mode = contextlib.nullcontext()
    if kernel == "triton":  # CPU tensors: the checks raise before any launch
        mode = _triton_kernels.selected(XENT_OPS, "cpu")
    if kernel == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode

        mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        for op, cases in ((fwd, fwd_cases), (bwd, bwd_cases)):
            for args, exc, msg in cases:
                with pytest.raises(exc, match=msg):
                    op(*args)


# A training step's backward must reuse the freed gradient of the step before.
# torch's CPU allocator takes memory with posix_memalign, and glibc < 2.38 never
# hands a freed posix_memalign block that has live neighbours to the next
# request of its size: in about half the processes every step then faulted in a
# fresh 16 MB gradient (~4000 pages, +4 to +10 ms at 4096 x 1000). Each child
# process is one draw of the heap's history; faults are counted, not timed.
_PAGE_FAULT_CHILD = r"""
import resource, sys
import torch
from pada_ext.ops import cross_entropy_with_grad_norm as xent
torch.set_num_threads(1)
g = torch.Generator().manual_seed(int(sys.argv[1]))
x = (torch.randn(4096, 1000, generator=g) * 3).requires_grad_()
y = torch.randint(0, 1000, (4096,), generator=g)
faults = []
for step in range(8):
    x.grad = None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    xent(x, y)[0].backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[3:]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator and getrusage faults")
def test_backward_reuses_the_freed_gradient_of_the_step_before():
    pages = 4096 * 1000 * 4 // 4096  # one gradient
    for seed in range(4):
        done = conftest.run_python("-c", _PAGE_FAULT_CHILD, str(seed))
        assert done.returncode == 0, done.stderr[-2000:]
        worst = int(done.stdout.split()[-1])
        assert worst < pages // 4, f"process {seed}: {worst} page faults in a steady step"
