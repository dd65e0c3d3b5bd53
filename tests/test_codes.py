"""The numeric codes of pada_ext/_codes.py against the compiled library's."""

import torch

from pada_ext import _codes


def python_values():
    dtype_names = {torch.float32: "FLOAT32", torch.float16: "FLOAT16", torch.bfloat16: "BFLOAT16"}
    values = {
        "STATUS_OUT_OF_RANGE": _codes.STATUS_OUT_OF_RANGE,
        "STATUS_NONFINITE": _codes.STATUS_NONFINITE,
        "STATUS_SIZE": _codes.STATUS_SIZE,
        "GROUPED_NORM_CHUNK": _codes.GROUPED_NORM_CHUNK,
    }
    values.update({f"REDUCTION_{k.upper()}": v for k, v in _codes.REDUCTION.items()})
    values.update(
        {f"GROUPED_NORM_DTYPE_{dtype_names[k]}": v for k, v in _codes.GROUPED_NORM_DTYPE.items()}
    )
    values.update(
        {f"GROUPED_NORM_FINISH_{k.upper()}": v for k, v in _codes.GROUPED_NORM_FINISH.items()}
    )
    values.update({f"PATH_NORM_{k.upper()}": v for k, v in _codes.PATH_NORM.items()})
    values.update({f"PATH_RULE_{k.upper()}": v for k, v in _codes.PATH_RULE.items()})
    return values


def test_python_codes_equal_the_compiled_ones():
    assert python_values() == _codes.cxx_values()


def test_reductions_are_torch_s():
    # The codes torch's own loss functions take (at::Reduction).
    from torch.nn import _reduction

    for name, code in _codes.REDUCTION.items():
        assert _reduction.get_enum(name) == code
