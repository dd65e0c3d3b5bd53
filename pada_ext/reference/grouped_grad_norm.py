"""References for grouped_grad_norm and friends: ``torch._foreach_norm`` in
float64, squared, then summed per group with ``index_add_``."""

import torch


def _group_sq_sums(tensors, group_index, num_groups, device):
    sq = torch.zeros(num_groups, dtype=torch.float64, device=device)
    if tensors:
        norms = torch.stack(torch._foreach_norm([t.double() for t in tensors]))
        sq.index_add_(0, group_index.to(device), norms.square())
    return sq


def grouped_grad_norm(tensors, group_index, num_groups, squared=False):
    device = tensors[0].device if tensors else group_index.device
    sq = _group_sq_sums(tensors, group_index, num_groups, device)
    return (sq if squared else sq.sqrt()).float()


def grouped_sq_norm_accumulate_(tensors, group_index, table):
    sq = _group_sq_sums(tensors, group_index, table.numel(), table.device)
    table.add_(sq.float())
    return table


def segment_grad_norm(flat, offsets, group_of_segment, num_groups, squared=False):
    off = offsets.tolist()
    pieces = [flat[a:b] for a, b in zip(off[:-1], off[1:])]
    return grouped_grad_norm(pieces, group_of_segment, num_groups, squared)
