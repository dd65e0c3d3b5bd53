"""Fake (meta) implementations of the compiled pada:: operators, so that
torch.compile and torch.export can trace through them without running them."""

import torch


@torch.library.register_fake("pada::sample_with_replacement")
def _sample_with_replacement_fake(weights, num_samples, seed):
    torch._check(weights.dim() == 1, lambda: "weights must be 1-D")
    torch._check(num_samples >= 0, lambda: "num_samples must be >= 0")
    return weights.new_empty((num_samples,), dtype=torch.int64)


@torch.library.register_fake("pada::importance_update_")
def _importance_update_fake(scores, visited, status, index, values, decay):
    torch._check(index.numel() == values.numel(), lambda: "one value per index")
    return None


def _grouped_device(tensors, group_index):
    for i, t in enumerate(tensors):
        if t.device != tensors[0].device:
            raise RuntimeError(
                f"all tensors must be on one device; tensors[{i}] is on {t.device} "
                f"but tensors[0] is on {tensors[0].device}"
            )
    return tensors[0].device if tensors else group_index.device


@torch.library.register_fake("pada::grouped_grad_norm")
def _grouped_grad_norm_fake(tensors, group_index, num_groups, squared=False):
    torch._check(num_groups >= 0, lambda: "num_groups must be >= 0")
    torch._check(group_index.numel() == len(tensors), lambda: "one group index per tensor")
    device = _grouped_device(tensors, group_index)
    return torch.empty((num_groups,), dtype=torch.float32, device=device)


@torch.library.register_fake("pada::grouped_sq_norm_accumulate_")
def _grouped_sq_norm_accumulate_fake(tensors, group_index, table):
    torch._check(group_index.numel() == len(tensors), lambda: "one group index per tensor")
    _grouped_device(tensors, group_index)
    torch._check(table.dtype == torch.float32, lambda: "table must be float32")


@torch.library.register_fake("pada::segment_grad_norm")
def _segment_grad_norm_fake(flat, offsets, group_of_segment, num_groups, squared=False):
    torch._check(num_groups >= 0, lambda: "num_groups must be >= 0")
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
