"""Public operators. Each checks its arguments, then runs one backend:

* ``"native"``: the compiled C++ (OpenMP) or CUDA kernel, ``torch.ops.pada.*``;
* ``"triton"``: the Triton kernel (CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1``), ``torch.ops.pada_triton.*``;
* ``"reference"``: plain PyTorch, slow and obviously right.

``backend=None`` picks the compiled kernel where there is one.
"""

import numbers

import torch

from . import _dispatch
from .reference import cross_entropy_with_grad_norm as _xent_reference
from .reference import sample_with_replacement as _swr_reference

__all__ = ["sample_with_replacement", "cross_entropy_with_grad_norm"]


def _check_sample_args(weights, num_samples):
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"sample_with_replacement: weights must be a Tensor, got {type(weights)}")
    if weights.dim() != 1:
        raise ValueError(f"sample_with_replacement: weights must be 1-D, got shape {tuple(weights.shape)}")
    if weights.numel() == 0:
        raise ValueError("sample_with_replacement: weights is empty")
    if weights.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"sample_with_replacement: weights must be float32 or float64, got {weights.dtype}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
        raise TypeError(f"sample_with_replacement: num_samples must be an int, got {num_samples!r}")
    if num_samples < 0:
        raise ValueError(f"sample_with_replacement: num_samples must be >= 0, got {num_samples}")


def sample_with_replacement(
    weights: torch.Tensor, num_samples: int, *, generator=None, backend=None
) -> torch.Tensor:
    """Draws `num_samples` int64 indices i.i.d. with P(i) = weights[i] / weights.sum().

    Exact at any size (no float32 cumulative sum, no 2^24 limit), O(N + M) work,
    and for a given generator state the same output whatever the thread count.

    Args:
        weights: 1-D float32 or float64 tensor on CPU or CUDA; finite, >= 0,
            not all zero, not necessarily normalised. Zero weights are never drawn.
        num_samples: number of indices to draw (>= 0).
        generator: the ``torch.Generator`` to take randomness from (default: the
            default generator of the weights' device, so ``torch.manual_seed``
            governs it). One int64 is drawn from it per call.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: negative, NaN or infinite weights (naming the first such
            index), all-zero, empty or non-1-D weights, negative num_samples.
        TypeError: weights of another dtype.
    """
    _check_sample_args(weights, num_samples)
    backend = _dispatch.resolve_backend("sample_with_replacement", backend, weights.device)
    seed = _dispatch.draw_seed(generator, weights.device)
    if backend == "reference":
        return _swr_reference.sample_with_replacement(weights, num_samples, seed)
    if backend == "triton":
        from .triton import sample_with_replacement as _swr_triton  # noqa: F401

        return torch.ops.pada_triton.sample_with_replacement(weights, num_samples, seed)
    return torch.ops.pada.sample_with_replacement(weights, num_samples, seed)


_XENT = "cross_entropy_with_grad_norm"
_XENT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_XENT_REDUCTIONS = ("mean", "sum", "none")


def _check_xent_args(logits, target, reduction, ignore_index, label_smoothing):
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"{_XENT}: logits and target must be Tensors")
    if logits.dim() != 2:
        raise ValueError(f"{_XENT}: logits must be 2-D [N, C], got shape {tuple(logits.shape)}")
    if logits.dtype not in _XENT_DTYPES:
        raise TypeError(f"{_XENT}: logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.shape[1] < 1:
        raise ValueError(
            f"{_XENT}: logits need at least one class, got shape {tuple(logits.shape)}"
        )
    if target.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{_XENT}: target must hold class indices (int64 or int32), got {target.dtype}"
        )
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{_XENT}: target must have shape [N] = [{logits.shape[0]}], got {tuple(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(f"{_XENT}: target is on {target.device} but logits are on {logits.device}")
    if reduction not in _XENT_REDUCTIONS:
        raise ValueError(f"{_XENT}: reduction must be one of {_XENT_REDUCTIONS}, got {reduction!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{_XENT}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{_XENT}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def _xent_reduce(loss_per_row, target, reduction, ignore_index, dtype):
    # As torch: "mean" divides by the number of non-ignored rows (NaN if none).
    if reduction == "none":
        return loss_per_row.to(dtype)
    total = loss_per_row.sum()
    if reduction == "sum":
        return total.to(dtype)
    return (total / (target != ignore_index).sum()).to(dtype)


def cross_entropy_with_grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    backend=None,
):
    """``F.cross_entropy`` and the per-sample norm of its gradient, in one pass.

    Returns ``(loss, grad_norm)``. ``loss`` (and its gradient w.r.t. ``logits``)
    is that of ``torch.nn.functional.cross_entropy(logits, target, reduction=...,
    ignore_index=..., label_smoothing=...)``, in the logits' dtype (accumulated
    in float32). ``grad_norm[i] = ||softmax(logits[i]) - t_i||_2``, the norm of
    the gradient of row i's own loss w.r.t. its logits, with ``t_i`` the one-hot
    target smoothed as torch smooths it: float32, shape [N], not differentiable.
    It is the per-sample score of PA&DA's data importance sampling, for free.

    ``grad_norm`` is 0 for ignored rows, and also for rows whose norm is not
    finite (NaN or +inf logits, or all -inf): such a row cannot poison an
    importance table, and its loss is NaN as torch's is, so it is still seen.

    Args:
        logits: [N, C] float32, float16 or bfloat16, on CPU or CUDA (any strides).
        target: [N] int64 or int32 class indices in [0, C), or ``ignore_index``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: a target out of range (naming the first such row; on CUDA a
            device-side assert, as torch's), shapes, devices or reduction.
        TypeError: dtypes of logits or target.
    """
    _check_xent_args(logits, target, reduction, ignore_index, label_smoothing)
    backend = _dispatch.resolve_backend(f"{_XENT}_fwd", backend, logits.device)
    target = target.long()  # a no-op for int64
    if backend == "reference":
        return _xent_reference.cross_entropy_with_grad_norm(
            logits, target, reduction, ignore_index, label_smoothing
        )
    if backend == "triton":
        from .triton import cross_entropy_with_grad_norm as _xent_triton  # noqa: F401

        fwd = torch.ops.pada_triton.cross_entropy_with_grad_norm_fwd
    else:
        fwd = torch.ops.pada.cross_entropy_with_grad_norm_fwd
    loss_per_row, grad_norm, _ = fwd(logits, target, int(ignore_index), float(label_smoothing))
    return _xent_reduce(loss_per_row, target, reduction, ignore_index, logits.dtype), grad_norm


def _xent_setup_context(ctx, inputs, output):
    logits, target, ignore_index, label_smoothing = inputs
    _, grad_norm, lse = output
    ctx.mark_non_differentiable(grad_norm, lse)
    ctx.save_for_backward(logits, target, lse)
    ctx.ignore_index, ctx.label_smoothing = ignore_index, label_smoothing


def _xent_backward(ctx, grad_loss_per_row, _grad_norm, _lse):
    logits, target, lse = ctx.saved_tensors
    grad = torch.ops.pada.cross_entropy_with_grad_norm_bwd(
        grad_loss_per_row, logits, target, lse, ctx.ignore_index, ctx.label_smoothing
    )
    return grad, None, None, None


torch.library.register_autograd(
    "pada::cross_entropy_with_grad_norm_fwd", _xent_backward, setup_context=_xent_setup_context
)
