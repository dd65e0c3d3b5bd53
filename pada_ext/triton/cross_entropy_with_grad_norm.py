"""Triton kernels of pada::cross_entropy_with_grad_norm_fwd and _bwd (registered by
pada_ext/_triton_kernels.py): one program per row.

The forward reads the row once in chunks of BLOCK with a lane-wise online
softmax (each lane keeps its own running max and sums; lanes are merged once
at the end), so the loss, the gradient norm and the row's log-sum-exp cost a
single read. The backward writes (softmax - target) * grad in one pass. The
math is that of csrc/common/cross_entropy_with_grad_norm_math.h: the target class
is left out of the sums so that the norm stays accurate when p_y -> 1.

Launch shape: BLOCK classes a chunk, 8 of them per thread (num_warps =
BLOCK / 256): at BLOCK 4096 with 4 warps each thread held 32 lanes of four
accumulators, 166-251 registers on sm_90; with 16 warps it is 47-58.

Autograd is the op's C++ one (csrc/autograd/), whichever kernel runs below it:
its backward calls pada::cross_entropy_with_grad_norm_bwd (this backward kernel
when selected), and under create_graph=True a differentiable ATen path.

On CPU tensors (TRITON_INTERPRET=1) the launcher checks targets on the host and
raises; on CUDA a bad target gets a NaN loss and norm (and a device assert
under TRITON_DEBUG=1), as a host check would cost a synchronisation.
"""

import torch
import triton
import triton.language as tl

from .. import _codes
from ..fake import xent_check_args, xent_check_bwd_args
from . import device_guard

_MAX_BLOCK = 4096
_PER_THREAD = 8  # classes of a chunk per thread: num_warps = BLOCK / (32 * 8)


@triton.jit
def _xent_fwd_kernel(
    logits_ptr,
    stride_row,
    target_ptr,
    loss_ptr,
    grad_norm_ptr,
    lse_ptr,
    C,
    ignore_index,
    eps,
    a,
    off_const,
    BLOCK: tl.constexpr,
    SMOOTH: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    y = tl.load(target_ptr + row)
    ignored = y == ignore_index
    valid = (y >= 0) & (y < C)
    tl.device_assert(valid | ignored, "cross_entropy_with_grad_norm: target out of range")
    base = logits_ptr + row * stride_row
    zy = tl.load(base + y, mask=valid, other=0.0).to(tl.float32)
    # The smoothing sum is of z - z_y (no cancellation at any offset); a
    # non-finite z_y shifts by 0 instead (csrc/common: smooth_ref).
    ref = tl.where((zy >= -3.4e38) & (zy <= 3.4e38), zy, 0.0)
    lanes = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    so = tl.zeros([BLOCK], tl.float32)
    s2o = tl.zeros([BLOCK], tl.float32)
    sz = tl.zeros([BLOCK], tl.float32)
    for c0 in range(0, C, BLOCK):
        offs = c0 + lanes
        inside = offs < C
        z = tl.load(base + offs, mask=inside, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, z)
        # A lane that is -inf so far rescales with 0 instead of exp(NaN).
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        f = tl.exp(m - m_ref)
        e = tl.where(offs == y, 0.0, tl.exp(z - m_ref))
        so = so * f + e
        s2o = s2o * (f * f) + e * e
        if SMOOTH:
            sz += tl.where(inside, z - ref, 0.0)
        m = m_new
    mx = tl.max(m, axis=0)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    w = tl.exp(m - mx)
    so_t = tl.sum(so * w, axis=0)
    s2o_t = tl.sum(s2o * (w * w), axis=0)
    s = so_t + tl.exp(zy - mx)
    log_s = tl.log(s)
    d = mx - zy  # loss from shifted values only: lse and z_y may both be huge
    q = so_t / s  # mass off the target, without 1 - p_y
    off = s2o_t / (s * s)
    if SMOOTH:
        off = off - 2.0 * a * q + off_const  # (C - 1) a^2
        dy = eps - a - q
        n2 = off + dy * dy
        n2 = tl.where(n2 < 0.0, 0.0, n2)  # rounding can leave -tiny; NaN must stay NaN
        loss = log_s + (1.0 - eps) * d + (eps * (mx - ref) - a * tl.sum(sz, axis=0))
    else:
        n2 = off + q * q
        loss = d + log_s
    gn = tl.sqrt(n2)
    gn = tl.where(gn <= 3.0e38, gn, float("nan"))  # a score table skips NaN; 0 would stick
    loss = tl.where(valid, loss, float("nan"))
    tl.store(loss_ptr + row, tl.where(ignored, 0.0, loss))
    tl.store(grad_norm_ptr + row, tl.where(ignored, 0.0, tl.where(valid, gn, float("nan"))))
    tl.store(lse_ptr + 2 * row, tl.where(ignored, 0.0, mx))
    tl.store(lse_ptr + 2 * row + 1, tl.where(ignored, 0.0, log_s))


@triton.jit
def _xent_bwd_kernel(
    grad_ptr,
    grad_stride,
    logits_ptr,
    stride_row,
    target_ptr,
    lse_ptr,
    out_ptr,
    C,
    ignore_index,
    a,
    b,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    y = tl.load(target_ptr + row)
    g = tl.load(grad_ptr + row * grad_stride)
    g = tl.where(y == ignore_index, 0.0, g)
    mx = tl.load(lse_ptr + 2 * row)
    log_s = tl.load(lse_ptr + 2 * row + 1)
    base = logits_ptr + row * stride_row
    out = out_ptr + row * C
    lanes = tl.arange(0, BLOCK)
    for c0 in range(0, C, BLOCK):
        offs = c0 + lanes
        inside = offs < C
        z = tl.load(base + offs, mask=inside, other=0.0).to(tl.float32)
        t = tl.where(offs == y, b, a)
        p = tl.exp((z - mx) - log_s)  # exact at any offset, unlike exp(z - lse)
        d = tl.where(g == 0.0, 0.0, (p - t) * g)  # ignored rows: exact zeros
        tl.store(out + offs, d.to(out_ptr.dtype.element_ty), mask=inside)


def _block(C: int) -> int:
    return min(max(triton.next_power_of_2(C), 16), _MAX_BLOCK)


def _num_warps(block: int) -> int:
    return max(1, min(16, block // (32 * _PER_THREAD)))


def _smooth(eps: float, C: int):
    a = eps / C
    return a, 1.0 - eps + a


def _host_check_targets(target, C, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= C))
    if bool(bad.any()):
        r = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"cross_entropy_with_grad_norm: target[{r}] = {int(target[r])} is out of range for "
            f"{C} classes (and is not ignore_index = {ignore_index})"
        )


def _rows(logits):
    # Rows are read with their stride; only a non-unit class stride costs a copy.
    return logits if logits.shape[1] <= 1 or logits.stride(1) == 1 else logits.contiguous()


_NONE, _MEAN = _codes.REDUCTION_NONE, _codes.REDUCTION_MEAN


def cross_entropy_with_grad_norm_fwd(logits, target, reduction, ignore_index, label_smoothing):
    # The native op's checks (same messages), so that every backend validates alike.
    xent_check_args("cross_entropy_with_grad_norm_fwd", logits, target, reduction, label_smoothing)
    logits, target = _rows(logits), target.contiguous()
    n, c = logits.shape
    if logits.device.type == "cpu":
        _host_check_targets(target, c, ignore_index)
    loss, gn = (torch.empty(n, dtype=torch.float32, device=logits.device) for _ in range(2))
    lse = torch.empty((n, 2), dtype=torch.float32, device=logits.device)  # (max, log s)
    if n > 0:
        a, _ = _smooth(label_smoothing, c)
        block = _block(c)
        with device_guard("cross_entropy_with_grad_norm", logits, target):
            _xent_fwd_kernel[(n,)](
                logits, logits.stride(0), target, loss, gn, lse, c, ignore_index,
                label_smoothing, a, (c - 1) * a * a, BLOCK=block, SMOOTH=label_smoothing != 0.0,
                num_warps=_num_warps(block),
            )  # fmt: skip
    if reduction != _NONE:  # on the device, no host sync; mean over kept rows (0 / 0 = NaN)
        loss = loss.sum()
        if reduction == _MEAN:
            loss = loss / (target != ignore_index).sum()
    return loss.to(logits.dtype), gn, lse


def cross_entropy_with_grad_norm_bwd(
    grad_loss, logits, target, lse, reduction, ignore_index, label_smoothing
):
    xent_check_bwd_args(grad_loss, logits, target, lse, reduction, label_smoothing)
    logits, target, lse = _rows(logits), target.contiguous(), lse.contiguous()
    n, c = logits.shape
    out = torch.empty((n, c), dtype=logits.dtype, device=logits.device)
    if n > 0:
        a, b = _smooth(label_smoothing, c)
        g = grad_loss.to(torch.float32)
        if reduction == _MEAN:
            g = g / (target != ignore_index).sum()
        g_stride = g.stride(0) if reduction == _NONE else 0
        block = _block(c)
        with device_guard("cross_entropy_with_grad_norm", g, logits, target, lse):
            _xent_bwd_kernel[(n,)](
                g, g_stride, logits, logits.stride(0), target, lse, out, c, ignore_index,
                a, b, BLOCK=block, num_warps=_num_warps(block),
            )  # fmt: skip
    return out


def aot_specs():
    """Ahead-of-time compile specs (sm_90): one dict per kernel variant, for
    ``triton.compile(ASTSource(fn=kernel, signature=..., constexprs=...), target=...)``."""
    specs = []
    fwd_sig = {
        "logits_ptr": None, "stride_row": "i64", "target_ptr": "*i64", "loss_ptr": "*fp32",
        "grad_norm_ptr": "*fp32", "lse_ptr": "*fp32", "C": "i32", "ignore_index": "i64",
        "eps": "fp32", "a": "fp32", "off_const": "fp32", "BLOCK": "constexpr",
        "SMOOTH": "constexpr",
    }  # fmt: skip
    bwd_sig = {
        "grad_ptr": "*fp32", "grad_stride": "i64", "logits_ptr": None, "stride_row": "i64",
        "target_ptr": "*i64", "lse_ptr": "*fp32", "out_ptr": None, "C": "i32",
        "ignore_index": "i64", "a": "fp32", "b": "fp32", "BLOCK": "constexpr",
    }  # fmt: skip
    for dtype in ("fp32", "fp16", "bf16"):
        for smooth in (False, True):
            specs.append(
                {
                    "name": f"xent_fwd_{dtype}_{'smooth' if smooth else 'plain'}",
                    "kernel": _xent_fwd_kernel,
                    "signature": {**fwd_sig, "logits_ptr": f"*{dtype}"},
                    "constexprs": {"BLOCK": _MAX_BLOCK, "SMOOTH": smooth},
                    "options": {"num_warps": _num_warps(_MAX_BLOCK)},
                }
            )
        specs.append(
            {
                "name": f"xent_bwd_{dtype}",
                "kernel": _xent_bwd_kernel,
                "signature": {**bwd_sig, "logits_ptr": f"*{dtype}", "out_ptr": f"*{dtype}"},
                "constexprs": {"BLOCK": _MAX_BLOCK},
                "options": {"num_warps": _num_warps(_MAX_BLOCK)},
            }
        )
    return specs
