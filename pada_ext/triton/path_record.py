"""Triton kernels of path_record_: the grouped norms of the gradients with the
grouped_grad_norm kernels (pada_ext/triton/grouped_grad_norm.py: chunk table,
partials, group totals), then a program per cell for the step and the rule
update, with the float32 operations of csrc/common/path_record.h (no FMA but
lerp's). Within a chunk and over a cell's tensor norms the order of the terms
is Triton's (tl.sum), so results match the C++ kernels to rounding.

The chunk table and the cells' group ranges go to the GPU from pinned host
memory: like the grouped_grad_norm Triton ops, this one refuses CUDA graph
capture (backend="native" can be captured). ema's weight 1 - decay reaches the
kernel as a one-element float32 tensor, rounded as torch rounds it (a Python
float argument stays float64 under the interpreter).
"""

import torch
import triton
import triton.language as tl

from .. import _codes
from .. import fake as _fake
from . import device_guard
from . import grouped_grad_norm as _gn

BLOCK = 256  # tensor norms per loop step of a cell program
_NORM_L2 = tl.constexpr(_codes.PATH_NORM["l2"])
_RULE_PAPER = tl.constexpr(_codes.PATH_RULE["paper"])
_RULE_EMA = tl.constexpr(_codes.PATH_RULE["ema"])


@triton.jit
def path_record_kernel(
    vals_ptr,
    begin_ptr,
    num_vals,
    weights_ptr,
    scale_ptr,
    w_ema_ptr,
    scores_ptr,
    visited_ptr,
    count_ptr,
    skipped_ptr,
    NORM: tl.constexpr,
    RULE: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    c = tl.program_id(0).to(tl.int64)
    w = tl.load(weights_ptr + c)
    if w > 0.0:
        b = tl.load(begin_ptr + c)
        e = tl.load(begin_ptr + c + 1)
        if NORM == _NORM_L2:
            sq = tl.load(vals_ptr + b, mask=b < e, other=0.0)
            step = tl.sqrt_rn(sq * w)
        else:
            acc = tl.zeros([BLOCK], dtype=tl.float64)
            for start in range(b, e, BLOCK):
                offs = start + tl.arange(0, BLOCK)
                acc += tl.load(vals_ptr + offs, mask=offs < e, other=0.0).to(tl.float64)
            step = (tl.sum(acc, axis=0) * w.to(tl.float64)).to(tl.float32)
            bad = tl.zeros([BLOCK], dtype=tl.int32)
            for start in range(0, num_vals, BLOCK):
                offs = start + tl.arange(0, BLOCK)
                v = tl.load(vals_ptr + offs, mask=offs < num_vals, other=0.0)
                bad += tl.where(v < float("inf"), 0, 1)  # NaN or inf: an overflowed step
            step = tl.where(tl.sum(bad, axis=0) > 0, float("nan"), step)
        if HAS_SCALE:
            step = step / tl.load(scale_ptr)
        s = tl.load(scores_ptr + c)
        seen = tl.load(visited_ptr + c) != 0
        n = tl.load(count_ptr + c)
        k = tl.load(skipped_ptr + c)
        if RULE == _RULE_PAPER:
            finite = step < float("inf")
            take = finite & (step > 0.0)
            s = tl.where(take, (s + step) * 0.5, s)
        else:
            finite = tl.abs(step) < float("inf")  # False for NaN too
            take = finite
            if RULE == _RULE_EMA:
                w_ema = tl.load(w_ema_ptr)
                d = step - s
                small = (w_ema < 0.5) & (w_ema > -0.5)
                mixed = tl.where(small, tl.fma(w_ema, d, s), tl.fma(w_ema - 1.0, d, step))
                s = tl.where(take, tl.where(seen, mixed, step), s)
            else:  # mean
                n = tl.where(take, n + 1.0, n)
                s = tl.where(take, s + (step - s) / tl.maximum(n, 1.0), s)
        k += tl.where(finite, 0, 1).to(tl.int64)
        tl.store(scores_ptr + c, s)
        tl.store(visited_ptr + c, (seen | take).to(tl.uint8))
        tl.store(count_ptr + c, n)
        tl.store(skipped_ptr + c, k)


def _groups(cells, num_cells, l2):
    """Each tensor's group and each cell's group range (csrc/host/path_record.cpp)."""
    if l2:
        return list(cells), list(range(num_cells + 1))
    begin = [0] * (num_cells + 1)
    for c in cells:
        begin[c + 1] += 1
    for c in range(num_cells):
        begin[c + 1] += begin[c]
    nxt = begin[:-1]
    group = []
    for c in cells:
        group.append(nxt[c])
        nxt[c] += 1
    return group, begin


def path_record_(
    grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay, grad_scale=None
):
    args = (grads, cell_index, weights, scores, visited, count, skipped, norm, rule, decay)
    _fake.path_record_check_args(*args, grad_scale)
    num_cells = scores.numel()
    _fake.path_record_check_cells(cell_index, num_cells)
    if num_cells == 0:
        return
    l2 = norm == _codes.PATH_NORM["l2"]
    group, begin = _groups(cell_index.tolist(), num_cells, l2)
    device = scores.device
    num_vals = num_cells if l2 else len(grads)
    vals = torch.zeros(max(num_vals, 1), dtype=torch.float32, device=device)
    items, keep = [], []  # keep: contiguous copies of strided gradients, alive until the launches
    for g, grp in zip(grads, group):
        if g is None or g.numel() == 0:
            continue
        if not _gn._dense(g):
            g = g.contiguous()
            keep.append(g)
        items.append((g.data_ptr(), g.numel(), g.element_size(), _gn._CODE[g.dtype], grp))
    _gn._launch("path_record_", items, num_vals, vals, "squared" if l2 else "norm")
    with device_guard("path_record_", scores, visited, count, skipped, weights):
        begin_t = torch.tensor(begin, dtype=torch.int64)
        if device.type == "cuda":
            begin_t = begin_t.pin_memory().to(device, non_blocking=True)
        # A fill kernel, not a host-to-device copy: no sync.
        w_ema = torch.full((1,), 1.0 - decay, dtype=torch.float32, device=device)
        path_record_kernel[(num_cells,)](
            vals,
            begin_t,
            num_vals,
            weights,
            grad_scale if grad_scale is not None else vals,
            w_ema,
            scores,
            visited.view(torch.uint8),
            count,
            skipped,
            NORM=norm,
            RULE=rule,
            HAS_SCALE=grad_scale is not None,
            BLOCK=BLOCK,
            enable_fp_fusion=False,
        )
    del keep


def aot_specs():
    """The cell kernel with the signatures the launcher produces (num_vals i32),
    for every norm, rule and AMP case."""
    return [
        {
            "name": f"path_record_{norm}_{rule}{'_scaled' if scaled else ''}",
            "kernel": path_record_kernel,
            "signature": {
                "vals_ptr": "*fp32",
                "begin_ptr": "*i64",
                "num_vals": "i32",
                "weights_ptr": "*fp32",
                "scale_ptr": "*fp32",
                "w_ema_ptr": "*fp32",
                "scores_ptr": "*fp32",
                "visited_ptr": "*u8",
                "count_ptr": "*fp32",
                "skipped_ptr": "*i64",
                "NORM": "constexpr",
                "RULE": "constexpr",
                "HAS_SCALE": "constexpr",
                "BLOCK": "constexpr",
            },
            "constexprs": {
                "NORM": _codes.PATH_NORM[norm],
                "RULE": _codes.PATH_RULE[rule],
                "HAS_SCALE": scaled,
                "BLOCK": BLOCK,
            },
            "options": {"enable_fp_fusion": False},
        }
        for norm in _codes.PATH_NORM
        for rule in _codes.PATH_RULE
        for scaled in (False, True)
    ]
