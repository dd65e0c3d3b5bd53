"""Triton kernel of pada::importance_update_ (registered by
pada_ext/_triton_kernels.py): a program per batch entry; the entry holding the
first occurrence of an index replays that index's visits in batch order with
the arithmetic of csrc/common/importance_update.h (float64, rounded to float32
after each visit, no FMA), so results equal the CPU kernel's bit for bit.
Out-of-range indices: skipped and counted in status[0] on the GPU; on CPU
tensors (TRITON_INTERPRET=1) the launcher raises first, as the CPU kernel does.

`decay` reaches the kernel as a one-element float64 tensor: a Python float
argument is typed fp32 by the compiler (the interpreter keeps it float64), and
fp32 decay would change the last bit against the C++ kernels. `n` and `size`
are typed i32 below 2**31 and i64 above; the kernel's index arithmetic is
int64 either way (program ids are widened first).
"""

import torch
import triton
import triton.language as tl

from .. import _codes
from . import device_guard

BLOCK = 256  # indices compared per step of the first-occurrence search
_OUT_OF_RANGE = tl.constexpr(_codes.STATUS_OUT_OF_RANGE)
_NONFINITE = tl.constexpr(_codes.STATUS_NONFINITE)


@triton.jit
def importance_update_kernel(
    scores_ptr,
    visited_ptr,
    status_ptr,
    index_ptr,
    values_ptr,
    decay_ptr,
    n,
    size,
    BLOCK: tl.constexpr,
):
    i = tl.program_id(0).to(tl.int64)
    key = tl.load(index_ptr + i)
    if (key < 0) | (key >= size):
        tl.atomic_add(status_ptr + _OUT_OF_RANGE, 1)
    else:
        earlier = tl.zeros([], tl.int32)
        start = tl.zeros([], tl.int64)
        while start < i:
            offs = start + tl.arange(0, BLOCK)
            ks = tl.load(index_ptr + offs, mask=offs < i, other=-1)
            earlier += tl.sum(((ks == key) & (offs < i)).to(tl.int32), 0)
            start += BLOCK
        if earlier == 0:
            decay = tl.load(decay_ptr)  # float64, as csrc/common/importance_update.h
            s = tl.load(scores_ptr + key)
            seen = tl.load(visited_ptr + key) != 0
            skipped = tl.zeros([], tl.int64)
            j = i
            while j < n:
                if tl.load(index_ptr + j) == key:
                    v = tl.load(values_ptr + j).to(tl.float64)
                    if v - v == 0.0:  # finite
                        mixed = decay * s.to(tl.float64) + (1.0 - decay) * v
                        s = tl.where(seen, mixed, v).to(tl.float32)
                        seen = True
                    else:
                        skipped += 1
                j += 1
            tl.store(scores_ptr + key, s)
            tl.store(visited_ptr + key, seen.to(tl.uint8))
            if skipped > 0:
                tl.atomic_add(status_ptr + _NONFINITE, skipped)


def importance_update_(scores, visited, status, index, values, decay):
    if index.numel() == 0:
        return
    if index.device.type == "cpu":  # interpreted: raise like the CPU kernel, before any change
        bad = ((index < 0) | (index >= scores.numel())).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            raise IndexError(
                f"importance_update_: index[{i}] = {int(index[i])} is out of range for a "
                f"table of {scores.numel()} entries"
            )
    with device_guard("importance_update_", scores, visited, status, index, values):
        # A fill kernel, not a host-to-device copy: no sync, and capturable.
        decay_t = torch.full((1,), float(decay), dtype=torch.float64, device=scores.device)
        importance_update_kernel[(index.numel(),)](
            scores,
            visited.view(torch.uint8),
            status,
            index.contiguous(),
            values.contiguous(),
            decay_t,
            index.numel(),
            scores.numel(),
            BLOCK=BLOCK,
            enable_fp_fusion=False,
        )


def aot_specs():
    """The kernel with the signatures the launcher really produces: n and size
    are i32 below 2**31 (i64 above, listed for float32 values)."""
    return [
        {
            "name": f"importance_update_{name}_{int_type}",
            "kernel": importance_update_kernel,
            "signature": {
                "scores_ptr": "*fp32",
                "visited_ptr": "*u8",
                "status_ptr": "*i64",
                "index_ptr": "*i64",
                "values_ptr": dtype,
                "decay_ptr": "*fp64",
                "n": int_type,
                "size": int_type,
                "BLOCK": "constexpr",
            },
            "constexprs": {"BLOCK": BLOCK},
            "options": {"enable_fp_fusion": False},
        }
        for name, dtype, int_type in (
            ("fp32", "*fp32", "i32"),
            ("fp16", "*fp16", "i32"),
            ("bf16", "*bf16", "i32"),
            ("fp64", "*fp64", "i32"),
            ("fp32", "*fp32", "i64"),
        )
    ]
