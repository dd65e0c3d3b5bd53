"""References for grouped_grad_norm and friends: ``torch._foreach_norm`` in
float64, squared, then summed per group with ``index_add``. Arguments are
checked by the compiled kernels' rules, with their messages.

grouped_grad_norm is differentiable here through torch's own autograd, with
vector_norm's gradient: g / ||g|| (0 for a group of norm 0), squared 2 g."""

import torch

from .. import _grouped_grad_norm_checks as checks


def _group_sq_sums(tensors, group_index, num_groups, device):
    sq = torch.zeros(num_groups, dtype=torch.float64, device=device)
    if tensors:
        norms = torch.stack(torch._foreach_norm([t.double() for t in tensors]))
        sq = sq.index_add(0, group_index.to(device), norms.square())
    return sq


def _sqrt_zero_grad_at_zero(sq):
    # sqrt's gradient is infinite at 0 (0 * inf = NaN through the squares):
    # take 0 there, as vector_norm does. NaN and inf still propagate.
    zero = sq == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, sq).sqrt())


def _values(index, given):
    # The values as the caller gave them (a list, so that torch.compile need
    # not read the tensor's data), else read from the (CPU) tensor.
    return index.tolist() if given is None else given


def _sums(op, tensors, group_index, num_groups, groups):
    checks.check_tensors(op, tensors, group_index, num_groups, _values(group_index, groups))
    device = tensors[0].device if tensors else group_index.device
    return _group_sq_sums(tensors, group_index, num_groups, device)


def grouped_grad_norm(tensors, group_index, num_groups, squared=False, groups=None):
    sq = _sums("grouped_grad_norm", tensors, group_index, num_groups, groups)
    return (sq if squared else _sqrt_zero_grad_at_zero(sq)).float()


def grouped_sq_norm_accumulate_(tensors, group_index, table, groups=None):
    op = "grouped_sq_norm_accumulate_"
    checks.check_accumulate(op, tensors, group_index, table, _values(group_index, groups))
    table.add_(_group_sq_sums(tensors, group_index, table.numel(), table.device).float())
    return table


def segment_grad_norm(
    flat, offsets, group_of_segment, num_groups, squared=False, values=(None, None)
):
    off = _values(offsets, values[0])
    values = (off, _values(group_of_segment, values[1]))
    checks.check_segments("segment_grad_norm", flat, offsets, group_of_segment, num_groups, values)
    pieces = [flat[a:b] for a, b in zip(off[:-1], off[1:])]
    sq = _group_sq_sums(pieces, group_of_segment, num_groups, flat.device)
    return (sq if squared else sq.sqrt()).float()
