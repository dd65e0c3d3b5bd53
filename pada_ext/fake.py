"""Fake (meta) implementations of the compiled pada:: operators, so that
torch.compile and torch.export can trace through them without running them."""

import torch

from . import (
    _codes,
    _grouped_grad_norm_autograd,  # noqa: F401  (registers the gradient)
)
from . import _grouped_grad_norm_checks as _ggn_checks
from . import _sample_with_replacement_checks as _swr_checks


@torch.library.register_fake("pada::sample_with_replacement")
def _sample_with_replacement_fake(weights, num_samples, seed):
    _swr_checks.check_args(weights, num_samples, seed)  # the kernels' rules
    return weights.new_empty((num_samples,), dtype=torch.int64)


@torch.library.register_fake("pada::importance_update_")
def _importance_update_fake(scores, visited, status, index, values, decay):
    torch._check(index.numel() == values.numel(), lambda: "one value per index")
    return None


# The kernels' rules, less those that read index values (a fake has none).
@torch.library.register_fake("pada::grouped_grad_norm")
def _grouped_grad_norm_fake(tensors, group_index, num_groups, squared=False):
    _ggn_checks.check_tensors("grouped_grad_norm", tensors, group_index, num_groups, None)
    device = tensors[0].device if tensors else group_index.device
    return torch.empty((num_groups,), dtype=torch.float32, device=device)


@torch.library.register_fake("pada::grouped_sq_norm_accumulate_")
def _grouped_sq_norm_accumulate_fake(tensors, group_index, table):
    _ggn_checks.check_accumulate("grouped_sq_norm_accumulate_", tensors, group_index, table, None)


@torch.library.register_fake("pada::segment_grad_norm")
def _segment_grad_norm_fake(flat, offsets, group_of_segment, num_groups, squared=False):
    _ggn_checks.check_segments(
        "segment_grad_norm", flat, offsets, group_of_segment, num_groups, None
    )
    return flat.new_empty((num_groups,), dtype=torch.float32)


_XENT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def xent_check_args(op, logits, target, reduction, label_smoothing):
    """The checks of csrc/host/cross_entropy_with_grad_norm.h (check_args),
    with the same messages and exception types: run by the fakes and by the
    Triton kernels, so that every kernel validates alike."""
    torch._check_value(
        logits.dim() == 2, lambda: f"{op}: logits must be 2-D [N, C], got {logits.dim()} dimensions"
    )
    torch._check_type(
        logits.dtype in _XENT_DTYPES,
        lambda: f"{op}: logits must be float32, float16 or bfloat16, got {logits.dtype}",
    )
    torch._check_value(logits.shape[1] >= 1, lambda: f"{op}: logits need at least one class")
    torch._check_type(
        target.dtype == torch.int64, lambda: f"{op}: target must be int64, got {target.dtype}"
    )
    torch._check_value(
        target.dim() == 1 and target.shape[0] == logits.shape[0],
        lambda: f"{op}: target must have shape [N] = [{logits.shape[0]}], got {list(target.shape)}",
    )
    torch._check_value(
        target.device == logits.device,
        lambda: f"{op}: target is on {target.device} but logits are on {logits.device}",
    )
    torch._check_value(
        reduction in _codes.REDUCTION.values(),
        lambda: f"{op}: reduction must be 0 (none), 1 (mean) or 2 (sum), got {reduction}",
    )
    torch._check_value(
        0.0 <= label_smoothing <= 1.0,
        lambda: f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}",
    )


def xent_check_bwd_args(grad_loss, logits, target, lse, reduction, label_smoothing):
    """check_bwd_args of the same header."""
    op = "cross_entropy_with_grad_norm_bwd"
    xent_check_args(op, logits, target, reduction, label_smoothing)
    n = logits.shape[0]
    torch._check_value(
        lse.dim() == 2 and lse.shape[0] == n and lse.shape[1] == 2,
        lambda: f"{op}: lse must be [{n}, 2], got {list(lse.shape)}",
    )
    torch._check_type(lse.dtype == torch.float32, lambda: f"{op}: lse must be float32")
    if reduction == _codes.REDUCTION_NONE:
        torch._check_value(
            grad_loss.dim() == 1 and grad_loss.shape[0] == n,
            lambda: (
                f"{op}: grad_loss must be [{n}] for reduction none, got {list(grad_loss.shape)}"
            ),
        )
    else:
        torch._check_value(
            grad_loss.dim() == 0,
            lambda: (
                f"{op}: grad_loss must be a scalar for reduction mean or sum, "
                f"got {list(grad_loss.shape)}"
            ),
        )
    torch._check_type(
        grad_loss.is_floating_point(),
        lambda: f"{op}: grad_loss must be floating point, got {grad_loss.dtype}",
    )
    for t in (grad_loss, lse):
        torch._check_value(
            t.device == logits.device,
            lambda t=t: f"{op}: tensors on {t.device} and {logits.device}",
        )


def xent_fwd_fake(logits, target, reduction, ignore_index, label_smoothing):
    """(loss, grad_norm, lse): loss [N] (reduction none) or [] in the logits' dtype."""
    xent_check_args("cross_entropy_with_grad_norm_fwd", logits, target, reduction, label_smoothing)
    n = logits.shape[0]
    loss = logits.new_empty((n,) if reduction == _codes.REDUCTION_NONE else ())
    grad_norm = logits.new_empty((n,), dtype=torch.float32)
    return loss, grad_norm, logits.new_empty((n, 2), dtype=torch.float32)  # lse: (max, log s)


def xent_bwd_fake(grad_loss, logits, target, lse, reduction, ignore_index, label_smoothing):
    xent_check_bwd_args(grad_loss, logits, target, lse, reduction, label_smoothing)
    return logits.new_empty(logits.shape)  # contiguous, as the kernels write it


torch.library.register_fake("pada::cross_entropy_with_grad_norm_fwd")(xent_fwd_fake)
torch.library.register_fake("pada::cross_entropy_with_grad_norm_bwd")(xent_bwd_fake)
