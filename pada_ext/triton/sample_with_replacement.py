"""Triton kernel of pada::sample_with_replacement (registered by pada_ext/_triton_kernels.py).

Bit-identical to the CPU kernel: it builds the same two-level alias table as
csrc/common/sample_with_replacement.h (same layout, same block-mass summation
order, same light/heavy lists and sweep, same fixed-point thresholds) and draws
with the same Philox4x32-10 words. Three launches:

* ``_block_kernel``, one program per block of L slots: block mass in the
  canonical 32-lane order, first invalid weight, scaled masses, then the block's
  alias table (order-preserving compaction by cumsum, then the sequential sweep);
* ``_top_kernel``, one program: total (in the same lane order as a block's
  mass), first invalid index, and the alias table over the 2^log_top blocks;
* ``_draw_kernel``, one program per DRAW_BLOCK samples.

The host reads two numbers between the last two launches (through pinned
memory) to raise the same errors as the CPU kernel; that sync makes the op
unfit for CUDA graph capture (tagged cudagraph_unsafe where torch has the tag).
The sweep's running sums are sequential by design (the order of float
additions fixes the table), so it is a scalar loop.
Loops over run-time bounds are `while` loops: triton 3.6's interpreter cannot
take range() of a tensor (a kernel argument or a loaded value) with numpy 2.
"""

import torch
import triton
import triton.language as tl

from .._sample_with_replacement_checks import check_args, check_status
from . import device_guard

MAX_LOG_BLOCK = 12  # kMaxLogBlock: blocks of at most 4096 slots
LOCAL_ALIAS_BITS = tl.constexpr(12)  # entry = (52-bit threshold << 12) | local alias
LOCAL_ALIAS_MASK = tl.constexpr((1 << 12) - 1)
LOCAL_FULL = tl.constexpr((1 << 52) - 1)  # kLocalFull
_INF = tl.constexpr(float("inf"))
TOP_CHUNK = 1024  # vector width of the top-level passes
DRAW_BLOCK = 1024  # samples per program of the draw kernel

# Launch options shared by every kernel. No FMA contraction: the tables must
# round exactly like the C++ (which uses __dmul_rn/__dadd_rn on the GPU).
_LAUNCH = {"enable_fp_fusion": False}


@triton.jit
def _local_entry(own, alias):
    # (local_threshold(own) << 12) | alias; `safe` keeps the float-to-int cast in range.
    safe = tl.where((own > 0.0) & (own < 1.0), own, 0.0)
    t = tl.minimum((safe * 4503599627370496.0).to(tl.uint64), LOCAL_FULL)  # 2^52
    thr = tl.where(own >= 1.0, tl.cast(LOCAL_FULL, tl.uint64), t)
    return ((thr << LOCAL_ALIAS_BITS) | tl.cast(alias, tl.uint64)).to(tl.int64, bitcast=True)


@triton.jit
def _top_threshold(own):
    safe = tl.where((own > 0.0) & (own < 1.0), own, 0.0)
    t = (safe * 18446744073709551616.0).to(tl.uint64)  # 2^64
    return tl.where(own >= 1.0, tl.cast(0xFFFFFFFFFFFFFFFF, tl.uint64), t).to(
        tl.int64, bitcast=True
    )


@triton.jit
def _alias_table(p_ptr, lists_ptr, size, out_ptr, alias_ptr, TOP: tl.constexpr, CH: tl.constexpr):
    """alias_sweep() over the `size` masses at p_ptr (scaled to sum to `size`).

    Builds the light list (p < 1) at the front of lists_ptr and the heavy list
    at its back (heavy(i) at size - 1 - i), both in slot order; runs the sweep,
    which records a slot's kept share in p (a heavy's residual) and its alias in
    alias_ptr; then a vector pass turns (share, alias) into the fixed-point
    entries: top thresholds in out_ptr (aliases stay in alias_ptr), or packed
    local entries in out_ptr (which may be alias_ptr itself).
    """
    tl.debug_barrier()  # p was stored by other threads
    nl = tl.zeros([], tl.int32)
    c = tl.zeros([], tl.int32)
    while c < size:
        idx = c + tl.arange(0, CH)
        valid = idx < size
        p = tl.load(p_ptr + idx, mask=valid, other=0.0)
        light = (p < 1.0) & valid
        is_l = light.to(tl.int32)
        lrank = nl + tl.cumsum(is_l, 0) - is_l
        tl.store(lists_ptr + lrank, idx, mask=light)
        tl.store(lists_ptr + (size - 1 - (idx - lrank)), idx, mask=valid & ~light)
        nl += tl.sum(is_l, 0)
        c += CH
    tl.debug_barrier()  # the sweep reads the lists as scalars
    # List positions of the next light and of the next heavy (heavy(1)).
    lpos = tl.zeros([], tl.int32)
    hpos = size - 2 + lpos
    if nl == size:
        # Only rounding leaves no heavy slot: every slot keeps its mass, and
        # zeros go to the first slot of the largest mass (the `j` of the pass below).
        pmax = tl.full([], -_INF, tl.float64)
        c = tl.zeros([], tl.int32)
        while c < size:
            idx = c + tl.arange(0, CH)
            p = tl.load(p_ptr + idx, mask=idx < size, other=-_INF)
            pmax = tl.maximum(pmax, tl.max(p, 0))
            c += CH
        j = tl.zeros([], tl.int32) + size
        c = tl.zeros([], tl.int32)
        while c < size:
            idx = c + tl.arange(0, CH)
            p = tl.load(p_ptr + idx, mask=idx < size, other=-_INF)
            j = tl.minimum(j, tl.min(tl.where(p == pmax, idx, size), 0))
            c += CH
    else:
        # Scalar loop, kept to a few operations per step (the interpreter pays per operation).
        j = tl.load(lists_ptr + size - 1)
        r = tl.load(p_ptr + j)
        heavy_step = r < 1.0  # as in the C++, a NaN r takes the light branch
        go = tl.where(heavy_step, hpos >= nl, lpos < nl)
        while go:
            if heavy_step:
                jn = tl.load(lists_ptr + hpos)
                tl.store(p_ptr + j, r)
                tl.store(alias_ptr + j, jn)
                r = tl.load(p_ptr + jn) + (r - 1.0)
                j = jn
                hpos -= 1
            else:
                i = tl.load(lists_ptr + lpos)
                pi = tl.load(p_ptr + i)
                tl.store(alias_ptr + i, j)  # i keeps pi, already in p
                r = r + (pi - 1.0)
                lpos += 1
            heavy_step = r < 1.0
            go = tl.where(heavy_step, hpos >= nl, lpos < nl)
    tl.debug_barrier()  # the sweep's scalar stores
    c = tl.zeros([], tl.int32)
    while c < size:
        q = c + tl.arange(0, CH)
        valid = q < size
        k = tl.load(lists_ptr + q, mask=valid, other=0)
        own = tl.load(p_ptr + k, mask=valid, other=0.0)
        alias = tl.load(alias_ptr + k, mask=valid, other=0)
        # Untouched by the sweep: the lights from lpos on, the heavies from j on.
        # They keep their slot, except that a zero goes to j.
        tail = ((q >= lpos) & (q < nl)) | ((q >= nl) & (q <= hpos + 1))
        zero = tail & (q < nl) & ~(own > 0.0)
        own = tl.where(tail, tl.where(zero, 0.0, 1.0).to(tl.float64), own)
        alias = tl.where(tail, tl.where(zero, j, k), alias)
        if TOP:
            tl.store(out_ptr + k, _top_threshold(own), mask=valid)
            tl.store(alias_ptr + k, alias, mask=valid)
        else:
            tl.store(out_ptr + k, _local_entry(own, alias), mask=valid)
        c += CH


@triton.jit
def _block_kernel(
    w_ptr, n, p_ptr, lists_ptr, table_ptr, mass_ptr, bad_ptr, LOG_BLOCK: tl.constexpr
):
    L: tl.constexpr = 1 << LOG_BLOCK
    ROWS: tl.constexpr = (L + 31) // 32
    b = tl.program_id(0).to(tl.int64)
    base = b * L
    length = tl.minimum(n - base, L)
    # Block mass in block_mass()'s order: lane l sums slots l, l + 32, ... in turn.
    lanes = tl.arange(0, 32)
    acc = tl.zeros([32], tl.float64)
    first_bad = tl.full([32], L, tl.int32)
    for row in range(ROWS):
        k = row * 32 + lanes
        x = tl.load(w_ptr + base + k, mask=k < length, other=0.0).to(tl.float64)
        acc += x  # padding adds +0.0, which changes no partial sum
        bad = ~(x >= 0.0) | (x == _INF)
        first_bad = tl.minimum(first_bad, tl.where(bad, k, L))
    local_bad = tl.min(first_bad, 0)
    tl.store(bad_ptr + b, tl.where(local_bad < L, base + local_bad, n))
    # The 32 lane sums, folded in lane order (the masked sums add only zeros, so are exact).
    mass = tl.zeros([], tl.float64)
    for lane in tl.static_range(32):
        mass += tl.sum(tl.where(lanes == lane, acc, 0.0), 0)
    tl.store(mass_ptr + b, mass)

    k = tl.arange(0, L)
    if mass > 0.0:
        scale = tl.cast(L, tl.float64) / mass
        x = tl.load(w_ptr + base + k, mask=k < length, other=0.0).to(tl.float64)
        # As scaled_mass() in the C++ header: (x / mass) * L when L / mass overflows
        # (a subnormal mass). Padding is exactly 0.
        px = tl.where(scale <= 1.7976931348623157e308, x * scale, (x / mass) * L)
        tl.store(p_ptr + base + k, tl.where(k < length, px, 0.0))
        _alias_table(
            p_ptr + base, lists_ptr + base, L, table_ptr + base, table_ptr + base, False, L
        )
    else:
        tl.store(table_ptr + base + k, tl.zeros([L], tl.int64))  # never chosen by the top level


@triton.jit
def _top_kernel(
    mass_ptr,
    bad_ptr,
    num_blocks,
    n,
    top_size,
    p_ptr,
    lists_ptr,
    thr_ptr,
    alias_ptr,
    status_ptr,
    CH: tl.constexpr,
):
    # Total in block_mass()'s lane order, as every backend sums it: lane l adds
    # blocks l, l + 32, ... in turn, the 32 lane sums are folded in lane order.
    lanes = tl.arange(0, 32)
    acc = tl.zeros([32], tl.float64)
    b = tl.zeros([], tl.int32)
    while b < num_blocks:
        acc += tl.load(mass_ptr + b + lanes, mask=b + lanes < num_blocks, other=0.0)
        b += 32
    total = tl.zeros([], tl.float64)
    for lane in tl.static_range(32):
        total += tl.sum(tl.where(lanes == lane, acc, 0.0), 0)
    first_bad = tl.zeros([], tl.int64) + n
    c = tl.zeros([], tl.int32)
    while c < num_blocks:
        idx = c + tl.arange(0, CH)
        bad = tl.load(bad_ptr + idx, mask=idx < num_blocks, other=n)
        first_bad = tl.minimum(first_bad, tl.min(bad, 0))
        c += CH
    tl.store(status_ptr, first_bad)
    tl.store(status_ptr + 1, total.to(tl.int64, bitcast=True))

    scale = tl.cast(top_size, tl.float64) / total
    c = tl.zeros([], tl.int32)
    while c < top_size:
        idx = c + tl.arange(0, CH)
        m = tl.load(mass_ptr + idx, mask=idx < num_blocks, other=0.0)
        pm = tl.where(scale <= 1.7976931348623157e308, m * scale, (m / total) * top_size)
        tl.store(p_ptr + idx, tl.where(idx < num_blocks, pm, 0.0), mask=idx < top_size)
        c += CH
    _alias_table(p_ptr, lists_ptr, top_size, thr_ptr, alias_ptr, True, CH)


@triton.jit
def _top_bits(word, bits):
    # The top `bits` (0..32) bits of a 32-bit word, as uint64 (a shift by 32 is undefined).
    return (word.to(tl.uint64) << tl.cast(bits, tl.uint64)) >> 32


@triton.jit
def _draw_kernel(
    seed_ptr,
    thr_ptr,
    alias_ptr,
    table_ptr,
    out_ptr,
    num_samples,
    log_top,
    log_block,
    BLOCK: tl.constexpr,
):
    s = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = s < num_samples
    seed = tl.load(seed_ptr)
    c0 = s.to(tl.uint32)
    c1 = (s >> 32).to(tl.uint32)
    zero = c0 * 0
    v0, v1, v2, v3 = tl.philox(seed, c0, c1, zero, zero)

    # Top level: word 0 picks a block, word 1 (+ a refinement word on a 32-bit tie) keeps it.
    b = _top_bits(v0, log_top)
    thr = tl.load(thr_ptr + b.to(tl.int64)).to(tl.uint64, bitcast=True)
    t_hi = (thr >> 32).to(tl.uint32)
    keep = v1 < t_hi
    tie = (v1 == t_hi) & mask
    if tl.sum(tie.to(tl.int32), 0) > 0:  # probability ~2^-32 per draw
        r0, r1, r2, r3 = tl.philox(seed, c0, c1, zero + 1, zero)
        keep = tl.where(tie, r0 < thr.to(tl.uint32), keep)
    alt = tl.load(alias_ptr + b.to(tl.int64)).to(tl.uint64)
    lb = tl.cast(log_block, tl.uint64)
    start = tl.where(keep, b, alt) << lb
    pos = start | _top_bits(v2, log_block)

    # Local level: word 3 (+ refinement bits) keeps the slot or takes its alias.
    entry = tl.load(table_ptr + pos.to(tl.int64), mask=mask, other=0).to(tl.uint64, bitcast=True)
    thr52 = entry >> LOCAL_ALIAS_BITS
    t_hi = (thr52 >> 20).to(tl.uint32)
    keep = v3 < t_hi
    tie = (v3 == t_hi) & mask
    if tl.sum(tie.to(tl.int32), 0) > 0:
        r0, r1, r2, r3 = tl.philox(seed, c0, c1, zero + 1, zero)
        keep = tl.where(tie, (r1 >> 12) < (thr52 & 0xFFFFF).to(tl.uint32), keep)
    alt = start | (entry & LOCAL_ALIAS_MASK)
    tl.store(out_ptr + s, tl.where(keep, pos, alt).to(tl.int64), mask=mask)


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length() if n > 1 else 0


def _launch(weights: torch.Tensor, num_samples: int, seed: torch.Tensor) -> torch.Tensor:
    check_args(weights, num_samples, seed)  # the compiled kernels' rules
    with device_guard("sample_with_replacement", weights, seed):
        return _launch_on_device(weights.contiguous(), num_samples, seed)


def _read_status(status: torch.Tensor) -> torch.Tensor:
    # The one host synchronisation: errors must be raised here.
    if status.device.type != "cuda":
        return status
    host = torch.empty(2, dtype=torch.int64, pin_memory=True)
    host.copy_(status, non_blocking=True)
    torch.cuda.current_stream(status.device).synchronize()
    return host


def _launch_on_device(w: torch.Tensor, num_samples: int, seed: torch.Tensor) -> torch.Tensor:
    if w.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "sample_with_replacement cannot be captured in a CUDA graph: it reads the weights' "
            "validation status back to the host"
        )
    n = w.numel()
    log_block = min(_ceil_log2(n), MAX_LOG_BLOCK)
    L = 1 << log_block
    num_blocks = (n + L - 1) >> log_block
    log_top = _ceil_log2(num_blocks)
    top_size = 1 << log_top
    f64, i32, i64 = torch.float64, torch.int32, torch.int64
    dev = w.device

    p = torch.empty(num_blocks * L, dtype=f64, device=dev)
    lists = torch.empty(num_blocks * L, dtype=i32, device=dev)
    table = torch.empty(num_blocks * L, dtype=i64, device=dev)
    mass = torch.empty(num_blocks, dtype=f64, device=dev)
    bad = torch.empty(num_blocks, dtype=i64, device=dev)
    _block_kernel[(num_blocks,)](
        w,
        n,
        p,
        lists,
        table,
        mass,
        bad,
        LOG_BLOCK=log_block,
        num_warps=8 if L > 1024 else 4,
        **_LAUNCH,
    )

    top_p = torch.empty(top_size, dtype=f64, device=dev)
    top_lists = torch.empty(top_size, dtype=i32, device=dev)
    top_thr = torch.empty(top_size, dtype=i64, device=dev)
    top_alias = torch.empty(top_size, dtype=i32, device=dev)
    status = torch.empty(2, dtype=i64, device=dev)
    _top_kernel[(1,)](
        mass,
        bad,
        num_blocks,
        n,
        top_size,
        top_p,
        top_lists,
        top_thr,
        top_alias,
        status,
        CH=TOP_CHUNK,
        **_LAUNCH,
    )
    st = _read_status(status)
    check_status(w, min(int(st[0]), n), float(st[1:].view(torch.float64)[0]))

    out = torch.empty(num_samples, dtype=i64, device=dev)
    if num_samples > 0:
        _draw_kernel[(triton.cdiv(num_samples, DRAW_BLOCK),)](
            seed,
            top_thr,
            top_alias,
            table,
            out,
            num_samples,
            log_top,
            log_block,
            BLOCK=DRAW_BLOCK,
            **_LAUNCH,
        )
    return out


def sample_with_replacement(weights, num_samples, seed):
    """num_samples indices drawn i.i.d. with P(i) = weights[i] / sum(weights); see pada_ext.ops.

    Synchronises with the host to validate the weights, so it cannot be captured
    in a CUDA graph (the schema is tagged ``torch.Tag.cudagraph_unsafe`` where torch has it).
    """
    return _launch(weights, num_samples, seed)


def aot_specs():
    """The kernels with concrete argument types, for an ahead-of-time compile check.

    Each dict: name, kernel, signature and constexprs for ``triton.compiler.ASTSource``,
    and the compile ``options`` the launcher uses.
    """
    block_sig = {
        "w_ptr": None,
        "n": "i64",
        "p_ptr": "*fp64",
        "lists_ptr": "*i32",
        "table_ptr": "*i64",
        "mass_ptr": "*fp64",
        "bad_ptr": "*i64",
        "LOG_BLOCK": "constexpr",
    }
    specs = []
    for wt in ("fp32", "fp64"):
        for log_block in (3, MAX_LOG_BLOCK):  # a block narrower than the 32 lanes, and a full one
            specs.append(
                {
                    "name": f"swr_block_{wt}_L{1 << log_block}",
                    "kernel": _block_kernel,
                    "signature": {**block_sig, "w_ptr": f"*{wt}"},
                    "constexprs": {"LOG_BLOCK": log_block},
                    "options": {**_LAUNCH, "num_warps": 8 if log_block > 10 else 4},
                }
            )
    specs.append(
        {
            "name": "swr_top",
            "kernel": _top_kernel,
            "signature": {
                "mass_ptr": "*fp64",
                "bad_ptr": "*i64",
                "num_blocks": "i32",
                "n": "i64",
                "top_size": "i32",
                "p_ptr": "*fp64",
                "lists_ptr": "*i32",
                "thr_ptr": "*i64",
                "alias_ptr": "*i32",
                "status_ptr": "*i64",
                "CH": "constexpr",
            },
            "constexprs": {"CH": TOP_CHUNK},
            "options": dict(_LAUNCH),
        }
    )
    specs.append(
        {
            "name": "swr_draw",
            "kernel": _draw_kernel,
            "signature": {
                "seed_ptr": "*i64",
                "thr_ptr": "*i64",
                "alias_ptr": "*i32",
                "table_ptr": "*i64",
                "out_ptr": "*i64",
                "num_samples": "i64",
                "log_top": "i32",
                "log_block": "i32",
                "BLOCK": "constexpr",
            },
            "constexprs": {"BLOCK": DRAW_BLOCK},
            "options": dict(_LAUNCH),
        }
    )
    return specs
