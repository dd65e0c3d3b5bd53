"""Public operators, one module per op (``pada_ext/ops/_<op>.py``). Each checks its
arguments, then runs one backend:

* ``"native"``: ``torch.ops.pada.*`` with its compiled C++ (OpenMP) or CUDA kernel;
* ``"triton"``: ``torch.ops.pada.*`` with its Triton kernel (CUDA tensors, or CPU
  tensors under ``TRITON_INTERPRET=1``): the same schema, fake and autograd; see
  ``pada_ext/_triton_kernels.py`` for how it is selected;
* ``"reference"``: plain PyTorch, slow and obviously right.

``backend=None`` picks the compiled kernel where there is one, else (CUDA tensors,
a build without CUDA kernels) the Triton one.
"""

from ._cross_entropy_with_grad_norm import cross_entropy_with_grad_norm
from ._grouped_grad_norm import grouped_grad_norm, grouped_sq_norm_accumulate_, segment_grad_norm
from ._importance_update import importance_update_
from ._path_record import path_record_
from ._sample_with_replacement import sample_with_replacement

__all__ = [
    "cross_entropy_with_grad_norm",
    "grouped_grad_norm",
    "grouped_sq_norm_accumulate_",
    "importance_update_",
    "path_record_",
    "sample_with_replacement",
    "segment_grad_norm",
]
