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


def path_record_check_args(
    grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay, grad_scale
):
    """The checks of csrc/host/path_record.cpp (plan_record), with the same
    messages and exception types, less those that read cell_index's values
    (a fake has none): run by the fake and by the Triton and reference
    backends, so that every backend validates alike."""
    op = "path_record_"
    torch._check_type(
        scores.dtype == torch.float32,
        lambda: f"{op}: scores must be torch.float32, got {scores.dtype}",
    )
    torch._check_value(scores.is_contiguous(), lambda: f"{op}: scores must be contiguous")
    for name, t, dtype in (
        ("visited", visited, torch.bool),
        ("count", count, torch.float32),
        ("skipped", skipped, torch.int64),
        ("weights", weights, torch.float32),
    ):
        torch._check_type(
            t.dtype == dtype,
            lambda name=name, t=t, d=dtype: f"{op}: {name} must be {d}, got {t.dtype}",
        )
        torch._check_value(
            t.shape == scores.shape and t.is_contiguous(),
            lambda name=name, t=t: (
                f"{op}: {name} must be contiguous and shaped like scores {list(scores.shape)}, "
                f"got {list(t.shape)}"
            ),
        )
        torch._check(
            t.device == scores.device,
            lambda name=name, t=t: (
                f"{op}: {name} is on {t.device} but scores are on {scores.device}"
            ),
        )
    if grad_scale is not None:
        torch._check_type(
            grad_scale.dtype == torch.float32,
            lambda: f"{op}: grad_scale must be torch.float32, got {grad_scale.dtype}",
        )
        torch._check_value(
            grad_scale.numel() == 1,
            lambda: f"{op}: grad_scale must have one element, got {grad_scale.numel()}",
        )
        torch._check(
            grad_scale.device == scores.device,
            lambda: f"{op}: grad_scale is on {grad_scale.device} but scores are on {scores.device}",
        )
    torch._check_value(
        norm in _codes.PATH_NORM.values(),
        lambda: f"{op}: norm must be 0 (l2) or 1 (paper), got {norm}",
    )
    torch._check_value(
        rule in _codes.PATH_RULE.values(),
        lambda: f"{op}: rule must be 0 (paper), 1 (ema) or 2 (mean), got {rule}",
    )
    torch._check_value(0.0 <= decay <= 1.0, lambda: f"{op}: decay must be in [0, 1], got {decay}")
    torch._check_type(
        cell_index.dtype == torch.int64,
        lambda: f"{op}: cell_index must be int64, got {cell_index.dtype}",
    )
    torch._check_value(
        cell_index.device.type == "cpu",
        lambda: (
            f"{op}: cell_index must be a CPU tensor (it is read on the host), "
            f"got {cell_index.device}"
        ),
    )
    n = len(grads)
    torch._check_value(
        cell_index.dim() == 1 and cell_index.numel() == n,
        lambda: (
            f"{op}: cell_index must be 1-D with one entry per gradient ({n}), "
            f"got shape {list(cell_index.shape)}"
        ),
    )
    for i, g in enumerate(grads):
        if g is None:
            continue
        torch._check(
            g.device == scores.device,
            lambda i=i, g=g: (
                f"{op}: grads[{i}] is on {g.device} but the tables are on {scores.device}"
            ),
        )
        torch._check_type(
            g.dtype in _XENT_DTYPES,
            lambda i=i, g=g: (
                f"{op}: grads[{i}] has dtype {g.dtype}; supported are float32, float16 and bfloat16"
            ),
        )


def path_record_check_cells(cell_index, cells):
    """The check that reads cell_index (not in the fake)."""
    for i, c in enumerate(cell_index.tolist()):
        if not 0 <= c < cells:
            raise IndexError(
                f"path_record_: cell_index[{i}] = {c} (for grads[{i}]) is out of range "
                f"for {cells} cells"
            )


@torch.library.register_fake("pada::path_record_")
def _path_record_fake(
    grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay, grad_scale=None
):
    path_record_check_args(
        grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay, grad_scale
    )
