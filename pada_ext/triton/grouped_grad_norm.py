"""Triton kernels of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
segment_grad_norm (registered by pada_ext/_triton_kernels.py): the chunk table
of the C++ kernels (rows of int64 (address, numel, dtype), ordered by group), a
program per chunk writing a float32 partial, then a program per group combining
its partials in float64. Two launches for any list, mixed dtypes included; no
atomics.

Within a chunk the order of the terms is Triton's (tl.sum), so results match
the C++ kernels to rounding, not to the bit.

The table goes to the GPU with an asynchronous copy from pinned host memory,
which a CUDA graph would replay from a host buffer that is freed or reused by
then: these launchers refuse to be captured. The compiled CUDA kernels
(backend="native") take the table by value and can be captured, so the
schemas carry no cudagraph_unsafe tag.
"""

import torch
import triton
import triton.language as tl

from .. import _codes
from .. import _grouped_grad_norm_checks as _checks
from . import device_guard

CHUNK = _codes.GROUPED_NORM_CHUNK  # elements per program
BLOCK = 1024  # elements per loop step of a chunk program
GROUP_BLOCK = 256  # partials per loop step of a group program
_CODE = _codes.GROUPED_NORM_DTYPE
_FINISH = _codes.GROUPED_NORM_FINISH


@triton.jit
def _chunk_sq_sum(addr, numel, ELEM: tl.constexpr, BLOCK: tl.constexpr):
    p = addr.to(tl.pointer_type(ELEM))
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, numel, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(p + offs, mask=offs < numel, other=0.0).to(tl.float32)
        acc += x * x
    return tl.sum(acc, axis=0)


@triton.jit
def chunk_partials_kernel(rows_ptr, partials_ptr, BLOCK: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)
    addr = tl.load(rows_ptr + 3 * c)
    numel = tl.load(rows_ptr + 3 * c + 1)
    code = tl.load(rows_ptr + 3 * c + 2)
    if code == 0:
        s = _chunk_sq_sum(addr, numel, tl.float32, BLOCK)
    elif code == 1:
        s = _chunk_sq_sum(addr, numel, tl.float16, BLOCK)
    else:
        s = _chunk_sq_sum(addr, numel, tl.bfloat16, BLOCK)
    tl.store(partials_ptr + c, s)


@triton.jit
def finish_groups_kernel(
    partials_ptr, group_begin_ptr, out_ptr, FINISH: tl.constexpr, BLOCK: tl.constexpr
):
    g = tl.program_id(0).to(tl.int64)
    begin = tl.load(group_begin_ptr + g)
    end = tl.load(group_begin_ptr + g + 1)
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    for start in range(begin, end, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(partials_ptr + offs, mask=offs < end, other=0.0).to(tl.float64)
    total = tl.sum(acc, axis=0).to(tl.float32)
    if FINISH == 0:
        total = tl.sqrt_rn(total)
    elif FINISH == 2:
        total += tl.load(out_ptr + g)
    tl.store(out_ptr + g, total)


def _dense(t):
    """True if t covers exactly numel slots from its data pointer (any dim order)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _launch(op, items, num_groups, out, finish):
    """The chunk table of `items` (address, numel, element size, dtype code,
    group) built on the host, then the two launches into `out`."""
    if num_groups == 0:
        return
    device = out.device
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            f"pada_ext.ops.{op}: the Triton kernel copies their chunk table from host "
            "memory, which a CUDA graph cannot replay; use backend='native' inside a graph"
        )
    by_group = [[] for _ in range(num_groups)]
    for addr, n, size, code, g in items:
        for off in range(0, n, CHUNK):
            by_group[g] += (addr + off * size, min(CHUNK, n - off), code)
    begin = [0]
    for rows in by_group:
        begin.append(begin[-1] + len(rows) // 3)
    words = [w for rows in by_group for w in rows] + begin
    table = torch.tensor(words, dtype=torch.int64)
    with device_guard(op, out):
        if device.type == "cuda":
            # Pinned source: asynchronous, and the host allocator keeps the
            # buffer until the stream has consumed it.
            table = table.pin_memory().to(device, non_blocking=True)
        num_rows = begin[-1]
        partials = torch.empty(max(num_rows, 1), dtype=torch.float32, device=device)
        if num_rows > 0:
            chunk_partials_kernel[(num_rows,)](table, partials, BLOCK=BLOCK)
        finish_groups_kernel[(num_groups,)](
            partials, table[3 * num_rows :], out, FINISH=_FINISH[finish], BLOCK=GROUP_BLOCK
        )


def _run(op, tensors, group_index, num_groups, out, finish):
    if tensors:
        device_guard(op, *tensors, out)  # rejects mixed devices
    items = []
    keep = []  # contiguous copies of strided tensors, alive until the launches
    for t, g in zip(tensors, group_index.tolist()):
        if t.numel() == 0:
            continue
        if not _dense(t):
            t = t.contiguous()
            keep.append(t)
        items.append((t.data_ptr(), t.numel(), t.element_size(), _CODE[t.dtype], g))
    _launch(op, items, num_groups, out, finish)
    del keep


def _device(tensors, group_index):
    return tensors[0].device if tensors else group_index.device


# Each launcher checks its arguments by the compiled kernels' rules.
def grouped_grad_norm(tensors, group_index, num_groups, squared=False):
    op = "grouped_grad_norm"
    _checks.check_tensors(op, tensors, group_index, num_groups, group_index.tolist())
    out = torch.zeros(num_groups, dtype=torch.float32, device=_device(tensors, group_index))
    _run(
        "grouped_grad_norm", tensors, group_index, num_groups, out, "squared" if squared else "norm"
    )
    return out


def grouped_sq_norm_accumulate_(tensors, group_index, table):
    op = "grouped_sq_norm_accumulate_"
    _checks.check_accumulate(op, tensors, group_index, table, group_index.tolist())
    _run("grouped_sq_norm_accumulate_", tensors, group_index, table.numel(), table, "accumulate")


def segment_grad_norm(flat, offsets, group_of_segment, num_groups, squared=False):
    """Segments [offsets[s], offsets[s + 1]) of the contiguous 1-D `flat`."""
    off = offsets.tolist()
    values = (off, group_of_segment.tolist())
    _checks.check_segments("segment_grad_norm", flat, offsets, group_of_segment, num_groups, values)
    out = torch.zeros(num_groups, dtype=torch.float32, device=flat.device)
    base, size, code = flat.data_ptr(), flat.element_size(), _CODE[flat.dtype]
    items = [
        (base + a * size, b - a, size, code, g)
        for a, b, g in zip(off[:-1], off[1:], group_of_segment.tolist())
        if b > a
    ]
    _launch("segment_grad_norm", items, num_groups, out, "squared" if squared else "norm")
    return out


def aot_specs():
    """The kernels with concrete signatures, for an ahead-of-time compile:
    ``triton.compile(triton.compiler.ASTSource(fn=s["kernel"], signature=s["signature"],
    constexprs=s["constexprs"]), target=...)`` for each spec ``s``."""
    specs = [
        {
            "name": "chunk_partials_kernel",
            "kernel": chunk_partials_kernel,
            "signature": {"rows_ptr": "*i64", "partials_ptr": "*fp32", "BLOCK": "constexpr"},
            "constexprs": {"BLOCK": BLOCK},
        }
    ]
    for finish, code in _FINISH.items():
        specs.append(
            {
                "name": f"finish_groups_kernel_{finish}",
                "kernel": finish_groups_kernel,
                "signature": {
                    "partials_ptr": "*fp32",
                    "group_begin_ptr": "*i64",
                    "out_ptr": "*fp32",
                    "FINISH": "constexpr",
                    "BLOCK": "constexpr",
                },
                "constexprs": {"FINISH": code, "BLOCK": GROUP_BLOCK},
            }
        )
    return specs
