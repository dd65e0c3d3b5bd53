"""Triton kernels. Imported lazily: triton is optional. Without a GPU set
TRITON_INTERPRET=1 before importing, to run them in Triton's interpreter."""

import contextlib

import torch


def device_guard(op: str, *tensors: torch.Tensor):
    """The context every Triton launch runs in: the tensors' own device made current.

    Triton launches on the current CUDA device, whatever device the pointers
    belong to, so tensors on cuda:1 with cuda:0 current would run on the wrong
    GPU (the compiled ops guard in C++, this is the same for Triton). Also
    rejects tensors that are not all on one device, naming the first stray one.
    """
    device = tensors[0].device
    for i, t in enumerate(tensors[1:], start=1):
        if t.device != device:
            raise ValueError(
                f"pada_ext.ops.{op}: all tensors must be on one device; "
                f"tensor {i} is on {t.device}, tensor 0 on {device}"
            )
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()
