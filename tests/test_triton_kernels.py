"""The Triton kernels as kernels of the pada:: operators (pada_ext/_triton_kernels.py):
one namespace, registered for CUDA where no CUDA kernel was built, selected
over the compiled kernel by backend="triton" and removed afterwards."""

import importlib
import pkgutil
import warnings

import conftest
import pytest
import torch
from conftest import requires_triton, triton_device

from pada_ext import _dispatch, _triton_kernels, ops


def _kernel_line(op, key):
    """The dispatcher's active registration of pada::op for `key`, or None."""
    for line in torch._C._dispatch_dump(f"pada::{op}").splitlines():
        if line.startswith(f"{key}: "):
            return line
    return None


def _compiled(op, key):
    line = _kernel_line(op, key)
    return line is not None and f"csrc/{key.lower()}/" in line


@requires_triton
def test_no_second_namespace():
    import pada_ext.triton

    for module in pkgutil.iter_modules(pada_ext.triton.__path__):
        importlib.import_module(f"pada_ext.triton.{module.name}")
    names = torch._C._dispatch_get_all_op_names()
    assert not [n for n in names if n.startswith("pada_triton::")]
    assert {f"pada::{op}" for op in _triton_kernels.KERNELS} <= set(names)


def test_each_op_has_a_launcher_with_its_schema():
    pytest.importorskip("triton")
    import inspect

    for op in _triton_kernels.KERNELS:
        schema = getattr(torch.ops.pada, op).default._schema
        params = list(inspect.signature(_triton_kernels.launcher(op)).parameters)
        assert params == [a.name for a in schema.arguments], op


def test_cuda_kernel_where_none_was_built():
    # A build without CUDA kernels serves CUDA tensors with Triton through pada::
    # (and backend="native" still means a compiled kernel only).
    for op in _triton_kernels.KERNELS:
        built = _compiled(op, "CUDA")
        triton_serves = _triton_kernels.serves(op, "CUDA")
        assert _dispatch.has_native_kernel(op, "CUDA") == built, op
        assert triton_serves == (not built and _dispatch.triton_available()), op
        if triton_serves:
            assert "_triton_kernels.py" in _kernel_line(op, "CUDA")


@requires_triton
@pytest.mark.triton
def test_compiled_kernel_is_back_after_a_triton_call():
    device = triton_device()
    key = device.upper()
    if _triton_kernels.serves("importance_update_", key):
        pytest.skip("Triton is this device's only kernel: nothing to restore")
    scores = torch.zeros(4, device=device)
    visited = torch.zeros(4, dtype=torch.bool, device=device)
    status = torch.zeros(2, dtype=torch.int64, device=device)
    index, values = torch.tensor([1, 1], device=device), torch.ones(2, device=device)
    with _triton_kernels.selected(["importance_update_"], device):
        assert "_triton_kernels.py" in _kernel_line("importance_update_", key)
    assert _compiled("importance_update_", key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dispatcher's override warning is silenced
        ops.importance_update_(scores, visited, status, index, values, 0.5, backend="triton")
    assert _compiled("importance_update_", key)
    with pytest.raises(ValueError, match="decay"):
        ops.importance_update_(scores, visited, status, index, values, 2.0, backend="triton")
    with pytest.raises(RuntimeError, match="inside"):
        with _triton_kernels.selected(["importance_update_"], device):
            raise RuntimeError("inside")
    assert _compiled("importance_update_", key)


@requires_triton
@pytest.mark.triton
def test_cross_entropy_autograd_is_the_cpp_one_with_triton_kernels(monkeypatch):
    """backend="triton": the op's C++ autograd node, the Triton forward and
    backward kernels, double backward through the node's ATen path, and the
    compiled kernels back afterwards."""
    from pada_ext.triton import cross_entropy_with_grad_norm as mod

    device = triton_device()
    calls = []
    for name in ("cross_entropy_with_grad_norm_fwd", "cross_entropy_with_grad_norm_bwd"):
        fn = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, fn=fn, name=name: calls.append(name) or fn(*a))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 11, generator=g).to(device)
    target = torch.randint(0, 11, (6,), generator=g).to(device)

    x = logits.clone().requires_grad_()
    loss, _ = ops.cross_entropy_with_grad_norm(x, target, label_smoothing=0.1, backend="triton")
    assert "CrossEntropyWithGradNormFunction" in loss.grad_fn.name()
    loss.backward()
    assert calls == ["cross_entropy_with_grad_norm_fwd", "cross_entropy_with_grad_norm_bwd"]
    want = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(want, target, label_smoothing=0.1).backward()
    torch.testing.assert_close(x.grad, want.grad)

    # Double backward: the gradient through the node's differentiable ATen path.
    calls.clear()
    x = logits.clone().requires_grad_()
    loss, _ = ops.cross_entropy_with_grad_norm(x, target, reduction="sum", backend="triton")
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    grad.square().sum().backward()
    assert calls == ["cross_entropy_with_grad_norm_fwd"]
    y = logits.clone().requires_grad_()
    (g_torch,) = torch.autograd.grad(
        torch.nn.functional.cross_entropy(y, target, reduction="sum"), y, create_graph=True
    )
    g_torch.square().sum().backward()
    torch.testing.assert_close(grad, g_torch)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)

    key = device.upper()
    for op in ("cross_entropy_with_grad_norm_fwd", "cross_entropy_with_grad_norm_bwd"):
        assert _triton_kernels.serves(op, key) or _compiled(op, key)


def test_triton_tests_count_as_gpu_tests_where_there_is_a_gpu():
    # tools/gpu_check.sh runs `pytest -m cuda`: a Triton test, which runs on
    # triton_device(), must be among them on a GPU machine, and not without one.
    class Item:
        callspec = None

        def __init__(self, *markers):
            self.markers = markers

        def get_closest_marker(self, name):
            return name if name in self.markers else None

    assert conftest._runs_on_cuda(Item("triton"), has_cuda=True)
    assert not conftest._runs_on_cuda(Item("triton"), has_cuda=False)
    assert not conftest._runs_on_cuda(Item(), has_cuda=True)
    assert conftest._runs_on_cuda(Item("cuda"), has_cuda=False)
