"""The numeric codes that Python and the C++/CUDA kernels share, named once.

Each value mirrors a constant in ``csrc/common`` (named beside it); the compiled
library exports the C++ values as attributes of ``pada_ext._C`` and
tests/test_codes.py checks that the two agree.
"""

import torch

# ImportanceSampler's status counters (csrc/common/importance_update.h, kStatus*).
STATUS_OUT_OF_RANGE = 0  # indices outside the table, skipped (counted on CUDA)
STATUS_NONFINITE = 1  # values not finite as float32, skipped
STATUS_SIZE = 2

# Loss reductions, as at::Reduction (csrc/common/cross_entropy_with_grad_norm_math.h, kReduce*).
REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2
REDUCTION = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM}

# Grouped norms: elements per chunk, chunk dtype codes and finishing modes
# (csrc/common/grouped_grad_norm.h: kChunk, DType, Finish).
GROUPED_NORM_CHUNK = 1 << 16
GROUPED_NORM_DTYPE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
GROUPED_NORM_FINISH = {"norm": 0, "squared": 1, "accumulate": 2}

# path_record_'s step norms and score rules (csrc/common/path_record.h: Norm, Rule).
PATH_NORM = {"l2": 0, "paper": 1}
PATH_RULE = {"paper": 0, "ema": 1, "mean": 2}


def cxx_values() -> dict:
    """The same names as the compiled library has them (see tests/test_codes.py)."""
    from . import _C

    return {name: getattr(_C, name) for name in dir(_C) if name.isupper()}
