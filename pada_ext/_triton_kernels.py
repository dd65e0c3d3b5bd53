"""The Triton kernels as kernels of the pada:: operators: the one place that says how.

Each ``pada_ext/triton/<module>.py`` holds, for each op in ``KERNELS``, a launcher
with the signature of the op's schema (``csrc/pada.cpp``), unannotated: the schema
is the one statement of the types. A launcher is the
implementation of ``pada::<op>`` for a dispatch key while a registration (a
``torch.library.Library("pada", "IMPL")``) holds it there, so the op keeps its one
schema, its one fake (``fake.py``) and its one autograd (C++ in ``csrc/autograd/``,
or ``_grouped_grad_norm_autograd.py``), whichever kernel runs below them:

* **CUDA, from import on**, for each op this build has no compiled CUDA kernel
  for, when triton is installed: a CPU-only build serves CUDA tensors through
  ``pada::`` (``backend=None``, ``"triton"`` and ``torch.compile`` alike).
* **Explicit selection** (``backend="triton"`` where a compiled kernel serves the
  device: CUDA, or CPU tensors under ``TRITON_INTERPRET=1``): :func:`call`
  registers the launcher for the tensors' key over the compiled kernel for the
  duration of the call, then removes it, which restores the compiled kernel
  (about 12 us). For the cross-entropy, whose backward is a second op called by
  the C++ autograd node, :func:`call` also hooks that node, so that its backward
  runs the Triton backward kernel the same way.

Limits of explicit selection over a compiled kernel, both inherent in choosing
a kernel per call while the dispatcher holds one kernel per (op, key):

* it is process-wide while it lasts: a call of the same op on the same device
  type from another thread meanwhile runs the Triton kernel too;
* torch.compile cannot trace a registration: a compiled graph calls ``pada::``
  ops and runs whichever kernel serves the device when the graph runs. Under
  torch.compile, ``backend="triton"`` over a compiled kernel thus runs the
  compiled kernel (where Triton is the device's only kernel, it runs Triton);
  call the compiled function inside :func:`selected` to run Triton.
"""

import contextlib
import importlib
import warnings

import torch

from . import _dispatch

# op -> the module of pada_ext/triton/ that defines its launcher (named after the op).
KERNELS = {
    "sample_with_replacement": "sample_with_replacement",
    "importance_update_": "importance_update",
    "grouped_grad_norm": "grouped_grad_norm",
    "grouped_sq_norm_accumulate_": "grouped_grad_norm",
    "segment_grad_norm": "grouped_grad_norm",
    "cross_entropy_with_grad_norm_fwd": "cross_entropy_with_grad_norm",
    "cross_entropy_with_grad_norm_bwd": "cross_entropy_with_grad_norm",
    "path_record_": "path_record",
}

_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_persistent = {}  # key -> (Library, ops it serves): the registrations made at import


def launcher(op: str):
    """The Triton launcher of pada::op (importing its module, hence triton)."""
    return getattr(importlib.import_module(f"pada_ext.triton.{KERNELS[op]}"), op)


def _kernel(op):
    # Imports triton at the first call, not when pada_ext is imported.
    def kernel(*args, **kwargs):
        return launcher(op)(*args, **kwargs)

    kernel.__name__ = kernel.__qualname__ = f"triton_{op}"
    return kernel


_override_warning_due = True  # the dispatcher's warning: once per process


def _impl(lib, ops, key):
    for op in ops:
        lib.impl(op, _kernel(op), key)


def _register(ops, key):
    global _override_warning_due
    lib = torch.library.Library("pada", "IMPL")
    if _override_warning_due and any(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"pada::{op}", key) for op in ops
    ):
        # The dispatcher warns once per process when a kernel overrides
        # another; overriding the compiled kernel is the point here. Only that
        # warning, only the first time (a filter change also resets the
        # registries that keep other warnings from repeating).
        _override_warning_due = False
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", r"(?s).*Overriding a previously registered kernel", UserWarning
            )
            _impl(lib, ops, key)
    else:
        _impl(lib, ops, key)
    return lib


def serves(op: str, key: str) -> bool:
    """Whether the Triton kernel is pada::op's kernel for `key` for good (not a compiled one)."""
    entry = _persistent.get(key)
    return entry is not None and op in entry[1]


def _register_where_no_compiled_kernel():
    if not _dispatch.triton_available():
        return
    missing = [
        op
        for op in KERNELS
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"pada::{op}", "CUDA")
    ]
    if missing:
        _persistent["CUDA"] = (_register(missing, "CUDA"), frozenset(missing))


_register_where_no_compiled_kernel()


@contextlib.contextmanager
def selected(ops, device):
    """pada::op runs its Triton kernel for `device`'s tensors inside the block, for
    each op in `ops` (registered over the compiled kernel unless Triton already
    serves the device); the compiled kernel is back afterwards."""
    key = _KEYS[torch.device(device).type]
    todo = [op for op in ops if not serves(op, key)]
    if not todo:
        yield
        return
    lib = _register(todo, key)
    try:
        yield
    finally:
        lib._destroy()


def _select_in_backward(node, op, key):
    # The hooks run on the thread that runs the node, before and after it. A
    # registration left by a node that raised goes with the graph (the Library
    # removes its registrations when collected), or at the node's next run.
    held = []

    def pre(grad_outputs):
        while held:
            held.pop()._destroy()
        held.append(_register([op], key))

    def post(grad_inputs, grad_outputs):
        while held:
            held.pop()._destroy()

    node.register_prehook(pre)
    node.register_hook(post)


def call(op: str, device, *args, backward_op=None):
    """torch.ops.pada.<op>(*args) with its Triton kernel for `device` (see the module
    docstring); `backward_op`: the op that the autograd node of the first output
    calls in its backward, run with its Triton kernel too."""
    fn = getattr(torch.ops.pada, op).default
    if _dispatch.compiling():  # the graph calls pada::, see the module docstring
        return fn(*args)
    key = _KEYS[torch.device(device).type]
    if serves(op, key):
        return fn(*args)
    with selected((op,), device):
        out = fn(*args)
    if backward_op is not None and not serves(backward_op, key):
        node = out[0].grad_fn
        if node is not None:
            _select_in_backward(node, backward_op, key)
    return out
