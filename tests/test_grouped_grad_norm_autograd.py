"""grouped_grad_norm is differentiable on every backend: d out[g] / d t =
t / out[g] (0 where out[g] is 0, as torch.linalg.vector_norm), 2 t when
squared, in t's dtype; checked against torch's own autograd of vector_norm,
with gradcheck, opcheck and torch.compile."""

import warnings

import pytest
import torch
from conftest import (
    BACKEND_DEVICES,
    DEVICES,
    HAS_CUDA,
    requires_triton,
    triton_device,
    triton_selected,
)

from pada_ext import ops

ALL_BACKENDS = BACKEND_DEVICES + [pytest.param("cpu", "reference", id="cpu-reference")]
if HAS_CUDA:
    ALL_BACKENDS.append(pytest.param("cuda", "reference", id="cuda-reference"))


def _leaves(device, dtype=torch.float32):
    """Leaf tensors (one zero, one empty, one read through a strided view) and their groups."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=gen)
    leaves = [
        torch.randn(5, generator=gen),
        torch.zeros(4),  # a group of norm 0: gradient 0, not NaN
        torch.randn(3, 7, generator=gen) * 3,
        torch.empty(0),
        base,
        torch.randn(70_000, generator=gen) * 0.1,  # more than one chunk
    ]
    leaves = [t.to(device=device, dtype=dtype).requires_grad_() for t in leaves]
    tensors = leaves[:4] + [leaves[4][:, ::2], leaves[5]]  # the strided view is copied
    return leaves, tensors, [0, 1, 2, 0, 2, 3], 5


def _vector_norm_grads(leaves, groups, num_groups, weights, squared):
    """The gradients torch's autograd gives for sum_g weights[g] * ||group g||."""
    copies = [t.detach().double().requires_grad_() for t in leaves]
    views = copies[:4] + [copies[4][:, ::2], copies[5]]
    total = 0.0
    for g in range(num_groups):
        members = [v.reshape(-1) for v, gi in zip(views, groups) if gi == g]
        if not members:
            continue
        norm = torch.linalg.vector_norm(torch.cat(members))
        total = total + weights[g].double() * (norm.square() if squared else norm)
    total.backward()
    return [c.grad.to(t.dtype) for c, t in zip(copies, leaves)]


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("device,backend", ALL_BACKENDS)
def test_gradient_matches_vector_norm(device, backend, squared):
    leaves, tensors, groups, g = _leaves(device)
    out = ops.grouped_grad_norm(tensors, groups, g, squared=squared, backend=backend)
    assert out.requires_grad and out.grad_fn is not None
    weights = torch.tensor([0.5, -2.0, 1.5, 3.0, 7.0], device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "autograd kernel not registered" warning
        (out * weights).sum().backward()
    want = _vector_norm_grads(leaves, groups, g, weights, squared)
    for i, (leaf, w) in enumerate(zip(leaves, want)):
        assert leaf.grad is not None, f"leaf {i} got no gradient"
        assert leaf.grad.dtype == leaf.dtype and leaf.grad.shape == leaf.shape
        torch.testing.assert_close(leaf.grad, w, rtol=1e-5, atol=1e-6, msg=f"leaf {i}")
    assert torch.equal(leaves[1].grad, torch.zeros_like(leaves[1]))  # zero norm: 0, not NaN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device,backend", ALL_BACKENDS)
def test_gradient_of_16_bit_tensors(device, backend, dtype):
    leaves, tensors, groups, g = _leaves(device, dtype)
    ops.grouped_grad_norm(tensors, groups, g, backend=backend).sum().backward()
    want = _vector_norm_grads(leaves, groups, g, torch.ones(g, device=device), False)
    for leaf, w in zip(leaves, want):
        assert leaf.grad.dtype == dtype
        torch.testing.assert_close(leaf.grad, w)


@pytest.mark.parametrize("device,backend", ALL_BACKENDS)
def test_gradcheck(device, backend):
    # The ops take no float64 (nor does the reference, by the same rules):
    # float32 inputs of norm ~1, with tolerances for float32 differences.
    gen = torch.Generator().manual_seed(5)
    inputs = [torch.randn(n, generator=gen).to(device).requires_grad_() for n in (3, 5, 4)]
    inputs.append(torch.zeros(2, device=device, requires_grad=True))

    def f(*ts):
        return ops.grouped_grad_norm(list(ts), [0, 1, 0, 2], 3, backend=backend)

    def g(*ts):
        return ops.grouped_grad_norm(list(ts), [1, 1, 0, 2], 3, squared=True, backend=backend)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not double precision"
        for fn in (f, g):
            assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_with_gradients(device):
    gen = torch.Generator().manual_seed(6)
    tensors = [torch.randn(n, generator=gen).to(device).requires_grad_() for n in (0, 3, 300)]
    tensors.append(torch.zeros(5, device=device, requires_grad=True))
    gi = torch.tensor([0, 1, 1, 2])
    for squared in (False, True):
        torch.library.opcheck(torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 3, squared))


@requires_triton
@pytest.mark.triton
def test_triton_opcheck_with_gradients():
    device = triton_device()
    tensors = [torch.randn(n, device=device, requires_grad=True) for n in (0, 7, 300)]
    gi = torch.tensor([0, 1, 1])
    with triton_selected("grouped_grad_norm"):
        for squared in (False, True):
            torch.library.opcheck(
                torch.ops.pada.grouped_grad_norm.default, (tensors, gi, 2, squared)
            )


COMPILE = [("cpu", "native", "aot_eager")]
if HAS_CUDA:
    COMPILE += [("cuda", "native", "inductor"), ("cuda", "triton", "inductor")]


@pytest.mark.parametrize("device,backend,compiler", COMPILE)
def test_torch_compile_backward(device, backend, compiler):
    if backend == "triton":
        pytest.importorskip("triton")
    leaves, tensors, groups, g = _leaves(device)

    def f(ts):
        return (ops.grouped_grad_norm(ts, groups, g, backend=backend) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True, backend=compiler)
    compiled(tensors).backward()
    got = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    leaves, tensors, _, _ = _leaves(device)
    f(tensors).backward()
    for a, t in zip(got, leaves):
        torch.testing.assert_close(a, t.grad)


def test_double_backward_through_the_norm():
    # d/dt of ||g||^2 through the norm: 2 t; its derivative w.r.t. t, 2 I.
    t = torch.randn(6, dtype=torch.float32, requires_grad=True)
    (grad,) = torch.autograd.grad(ops.grouped_grad_norm([t], [0], 1), t, create_graph=True)
    torch.testing.assert_close(grad, (t / t.norm()).detach())
    (hvp,) = torch.autograd.grad(grad.sum(), t)
    n = t.detach().norm()
    want = (torch.ones(6) - t.detach() * t.detach().sum() / n**2) / n
    torch.testing.assert_close(hvp, want)
