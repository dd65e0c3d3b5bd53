"""Fake (meta) implementations of the compiled pada:: operators, so that
torch.compile and torch.export can trace through them without running them."""

import torch

from . import _grouped_grad_norm_autograd  # noqa: F401  (registers the gradient)
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


def xent_fwd_fake(logits, target, reduction, ignore_index, label_smoothing):
    """(loss, grad_norm, lse): loss [N] (reduction none) or [] in the logits' dtype."""
    torch._check(logits.dim() == 2, lambda: "logits must be 2-D")
    torch._check(target.shape == logits.shape[:1], lambda: "target must be [N]")
    torch._check(reduction in (0, 1, 2), lambda: "reduction must be 0, 1 or 2")
    n = logits.shape[0]
    loss = logits.new_empty((n,) if reduction == 0 else ())
    return loss, *(logits.new_empty((n,), dtype=torch.float32) for _ in range(2))


def xent_bwd_fake(grad_loss, logits, target, lse, reduction, ignore_index, label_smoothing):
    torch._check(logits.dim() == 2, lambda: "logits must be 2-D")
    return logits.new_empty(logits.shape)  # contiguous, as the kernels write it


torch.library.register_fake("pada::cross_entropy_with_grad_norm_fwd")(xent_fwd_fake)
torch.library.register_fake("pada::cross_entropy_with_grad_norm_bwd")(xent_bwd_fake)
