"""pada_ext.ops.cross_entropy_with_grad_norm: argument rules, the fused or composite
path, backend choice, docs.

Kernels: csrc/cpu|cuda/cross_entropy_with_grad_norm.*, csrc/autograd/ (backward),
pada_ext/triton/cross_entropy_with_grad_norm.py; reference:
pada_ext/reference/cross_entropy_with_grad_norm.py; the exact ATen path for
weights, soft targets and float64: pada_ext/_cross_entropy_composite.py.
"""

import numbers

import torch

from .. import _codes, _dispatch, _triton_kernels
from .. import _cross_entropy_composite as _xent_composite
from ..reference import cross_entropy_with_grad_norm as _xent_reference

_XENT = "cross_entropy_with_grad_norm"
_XENT_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_XENT_INDEX_DTYPES = (torch.int64, torch.int32, torch.uint8)  # torch takes int64, uint8


def _xent_normalise(logits, target, weight, reduction, ignore_index, label_smoothing):
    """Checks what the op's schema cannot express (Python types, which path a
    target's dtype and shape select) and returns label_smoothing as a float;
    the values of the kernels' arguments are checked by the op itself."""
    for name, v in (("logits", logits), ("target", target)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{_XENT}: {name} must be a Tensor, got {type(v).__name__}")
    if weight is not None and not isinstance(weight, torch.Tensor):
        raise TypeError(f"{_XENT}: weight must be a Tensor or None, got {type(weight).__name__}")
    if not isinstance(reduction, str) or reduction not in _codes.REDUCTION:
        raise ValueError(
            f"{_XENT}: reduction must be one of {tuple(_codes.REDUCTION)}, got {reduction!r}"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{_XENT}: ignore_index must be an int, got {ignore_index!r}")
    if isinstance(label_smoothing, torch.Tensor):  # F.cross_entropy takes a 0-dim tensor too
        if label_smoothing.dim() != 0 or not label_smoothing.is_floating_point():
            raise TypeError(
                f"{_XENT}: label_smoothing must be a float or a 0-dim floating tensor, got a "
                f"{label_smoothing.dtype} tensor of shape {tuple(label_smoothing.shape)}"
            )
    elif isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"{_XENT}: label_smoothing must be a float, got {label_smoothing!r}")
    label_smoothing = float(label_smoothing)
    if not logits.is_floating_point():
        raise TypeError(
            f"{_XENT}: logits must be floating point, not an integer tensor, got {logits.dtype}"
        )
    if logits.dim() < 1:
        raise ValueError(f"{_XENT}: logits must be [C], [N, C] or [N, C, d1, ...], got a scalar")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise TypeError(
                f"{_XENT}: target of dtype {target.dtype} and shape {tuple(target.shape)}: class "
                "indices must be int64, int32 or uint8, and probabilities (soft targets) must "
                f"have the logits' shape {tuple(logits.shape)}"
            )
    elif target.dtype not in _XENT_INDEX_DTYPES:
        raise TypeError(
            f"{_XENT}: target must hold class indices (int64, int32 or uint8) or probabilities "
            f"shaped as the logits, got {target.dtype}"
        )
    else:
        want = logits.shape[:1] + logits.shape[2:] if logits.dim() > 1 else ()
        if target.shape != want:
            raise ValueError(
                f"{_XENT}: target must have shape {list(want)} for logits of shape "
                f"{list(logits.shape)}, got {list(target.shape)}"
            )
    return label_smoothing


def cross_entropy_with_grad_norm(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight=None,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    backend=None,
):
    """``F.cross_entropy`` and the per-sample norm of its gradient, in one pass.

    Returns ``(loss, grad_norm)``. ``loss`` (and its gradient w.r.t. ``logits``)
    is that of ``torch.nn.functional.cross_entropy(logits, target, weight,
    reduction=..., ignore_index=..., label_smoothing=...)``, with its dtypes
    (under ``torch.autocast`` 16-bit logits run in float32, as torch's do).

    A sample is a row ``i`` of [N, C] logits, or a position ``(i, j, ...)`` of
    [N, C, d1, ...] logits (class dim 1). ``grad_norm`` has the shape of the
    samples ([N] or [N, d1, ...], [] for unbatched [C] logits), is not
    differentiable, float32 (float64 for float64 logits), and is the L2 norm
    over the classes of the gradient of the sample's own, unweighted loss
    ``l_i = -sum_c t_ic log softmax(z_i)_c`` w.r.t. its logits ``z_i``::

        grad_norm_i = || softmax(z_i) * sum_c t_ic - t_i ||_2

    with ``t_i`` the sample's target distribution smoothed as torch smooths it,
    ``(1 - label_smoothing) * t + label_smoothing / C``, where ``t`` is the
    one-hot class (class indices) or the given probabilities (soft targets,
    which need not sum to 1). ``weight`` scales the loss, not the scores, so
    that scores stay comparable across classes; ``reduction`` does not enter.
    It is the per-sample score of PA&DA's data importance sampling, for free.

    ``grad_norm`` is 0 for ignored samples and NaN where the norm is not
    finite (NaN or +inf logits, or all -inf): importance tables
    (:func:`importance_update_`, the samplers) skip NaN scores, so such a row
    cannot poison them, and its loss is NaN as torch's is, so it is still seen.

    Class-index targets with float32/16 or bfloat16 logits and no ``weight``
    run the fused kernels of ``backend`` ([N, C, d1, ...] as rows of C); class
    weights, soft targets and float64 logits take an exact ATen path on every
    backend but ``"reference"`` (loss from F.cross_entropy, norm in float32, or
    float64 for float64 logits, by the formula above).

    Args:
        logits: [C], [N, C] or [N, C, d1, ...] floating point, on CPU or CUDA
            (any strides).
        target: class indices (int64, int32 or uint8; [N, d1, ...], [] for [C]
            logits) in [0, C) or ``ignore_index``; or probabilities with the
            logits' shape and a floating dtype.
        weight: None or [C] class weights, as F.cross_entropy's.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: a float in [0, 1] (or a 0-dim floating tensor, read
            on the host, as torch does).
        backend: ``None``, ``"native"``, ``"triton"`` or ``"reference"``.

    Raises:
        ValueError: a target out of range (naming the first such row on the
            fused path; on CUDA a device-side assert, as torch's), shapes,
            devices, reduction or label_smoothing's range.
        TypeError: non-tensor logits or target, dtypes (float class-index
            targets included), a non-float label_smoothing or ignore_index.
    """
    # The common call (CPU [N, C] logits of a kernel dtype, an int64 [N] target,
    # Python scalars, no weight) goes straight to the op, which checks the
    # values itself with the same messages: the general checks below cost about
    # a sixth of a whole forward + backward on small batches.
    if (
        weight is None
        and backend is None
        and type(label_smoothing) is float
        and type(ignore_index) is int
        and type(reduction) is str
        and isinstance(logits, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and logits.dim() == 2
        and target.dim() == 1
        and target.dtype == torch.int64
        and logits.device.type == "cpu"
        and logits.dtype in _XENT_KERNEL_DTYPES
        and target.shape[0] == logits.shape[0]
        and reduction in _codes.REDUCTION
    ):
        loss, grad_norm, _ = torch.ops.pada.cross_entropy_with_grad_norm_fwd.default(
            logits, target, _codes.REDUCTION[reduction], ignore_index, label_smoothing
        )
        return loss, grad_norm
    label_smoothing = _xent_normalise(
        logits, target, weight, reduction, ignore_index, label_smoothing
    )
    backend = _dispatch.resolve_backend(f"{_XENT}_fwd", backend, logits.device)
    unbatched = logits.dim() == 1
    if unbatched:  # [C] with a [] target (or [C] probabilities): one sample
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    composite = (
        weight is not None or target.is_floating_point() or logits.dtype not in _XENT_KERNEL_DTYPES
    )
    if backend == "reference" or composite:
        # These paths do not reach the op: its range check, with its message.
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{_XENT}: label_smoothing must be in [0, 1], got {label_smoothing}")
        if backend == "reference":
            loss, grad_norm = _xent_reference.cross_entropy_with_grad_norm(
                logits, target, reduction, ignore_index, label_smoothing, weight
            )
        else:
            loss, grad_norm = _xent_composite.cross_entropy_with_grad_norm(
                logits, target, weight, reduction, ignore_index, label_smoothing
            )
    else:
        sample_shape = target.shape
        if logits.dim() > 2:  # one row of C classes per position
            logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
            target = target.reshape(-1)
        target = target.long()  # a no-op for int64
        args = (logits, target, _codes.REDUCTION[reduction], int(ignore_index), label_smoothing)
        if backend == "triton":  # the same op and C++ autograd, with the Triton kernels
            loss, grad_norm, _ = _triton_kernels.call(
                f"{_XENT}_fwd", logits.device, *args, backward_op=f"{_XENT}_bwd"
            )
        else:  # differentiable through a C++ autograd kernel (csrc/autograd/)
            loss, grad_norm, _ = torch.ops.pada.cross_entropy_with_grad_norm_fwd.default(*args)
        if len(sample_shape) != 1:
            grad_norm = grad_norm.reshape(sample_shape)
            if reduction == "none":
                loss = loss.reshape(sample_shape)
    if unbatched:
        grad_norm = grad_norm.squeeze(0)
        if reduction == "none":
            loss = loss.squeeze(0)
    return loss, grad_norm
