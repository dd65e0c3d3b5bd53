"""Argument checks of grouped_grad_norm, grouped_sq_norm_accumulate_ and
segment_grad_norm: one set of rules, so the same bad input raises the same
exception with the same message on every backend (compiled, Triton, reference)
and in the fake kernels; the wrappers reject what the ops cannot take (None
entries, non-Tensors, float indices) naming the argument."""

import pytest
import torch
from conftest import DEVICES, HAS_CUDA, triton_selected, triton_usable
from torch._subclasses.fake_tensor import FakeTensorMode

from pada_ext import ops

GGN, ACC, SEG = "grouped_grad_norm", "grouped_sq_norm_accumulate_", "segment_grad_norm"


def _backends(device):
    """Every backend that runs on `device` in this session."""
    out = ["native", "reference"]
    if triton_usable() and (device == "cuda" or not HAS_CUDA):
        out.append("triton")
    return out


def _other(device):
    return "cpu" if device == "cuda" else "meta"  # a second device that every session has


def _bad_calls(device):
    """(id, call(backend)) of inputs that break one rule each."""
    r = lambda *s: torch.randn(*s, device=device)  # noqa: E731
    ts = [r(3), r(4)]
    i64 = torch.tensor([0, 0])
    table = torch.zeros(2, device=device)
    flat = r(10)
    yield "group_out_of_range", lambda b: ops.grouped_grad_norm(ts, [0, 5], 3, backend=b)
    yield "negative_group", lambda b: ops.grouped_grad_norm(ts, [-1, 0], 3, backend=b)
    yield "short_group_index", lambda b: ops.grouped_grad_norm(ts, [0], 3, backend=b)
    yield "2d_group_index", lambda b: ops.grouped_grad_norm(ts, i64[None], 3, backend=b)
    yield "negative_num_groups", lambda b: ops.grouped_grad_norm(ts, [0, 0], -1, backend=b)
    yield (
        "float64_tensor",
        lambda b: ops.grouped_grad_norm([ts[0], r(2).double()], i64, 1, backend=b),
    )
    yield "int_tensor", lambda b: ops.grouped_grad_norm([ts[0], i64.to(device)], i64, 1, backend=b)
    yield "int32_group_index", lambda b: ops.grouped_grad_norm(ts, i64.int(), 1, backend=b)
    yield "float_group_index", lambda b: ops.grouped_grad_norm(ts, i64.float(), 1, backend=b)
    stray = [ts[0], torch.ones(3, device=_other(device))]
    yield "two_devices", lambda b: ops.grouped_grad_norm(stray, i64, 1, backend=b)
    yield (
        "acc_table_float64",
        lambda b: ops.grouped_sq_norm_accumulate_(ts, i64, table.double(), backend=b),
    )
    yield "acc_table_2d", lambda b: ops.grouped_sq_norm_accumulate_(ts, i64, table[None], backend=b)
    yield (
        "acc_table_strided",
        lambda b: ops.grouped_sq_norm_accumulate_(
            ts, i64, torch.zeros(4, device=device)[::2], backend=b
        ),
    )
    yield (
        "acc_group_out_of_range",
        lambda b: ops.grouped_sq_norm_accumulate_(ts, [0, 2], table, backend=b),
    )
    yield (
        "acc_int8_tensor",
        lambda b: ops.grouped_sq_norm_accumulate_(
            [ts[0], r(3).to(torch.int8)], i64, table, backend=b
        ),
    )
    yield (
        "acc_requires_grad",
        lambda b: ops.grouped_sq_norm_accumulate_(
            [ts[0], r(4).requires_grad_()], i64, table, backend=b
        ),
    )
    yield (
        "acc_table_requires_grad",
        lambda b: ops.grouped_sq_norm_accumulate_(
            ts, i64, torch.zeros(2, device=device, requires_grad=True), backend=b
        ),
    )
    yield "seg_decreasing", lambda b: ops.segment_grad_norm(flat, [0, 5, 4], [0, 0], 1, backend=b)
    yield "seg_offsets_past_end", lambda b: ops.segment_grad_norm(flat, [0, 11], [0], 1, backend=b)
    yield "seg_negative_offset", lambda b: ops.segment_grad_norm(flat, [-1, 3], [0], 1, backend=b)
    yield "seg_group_out_of_range", lambda b: ops.segment_grad_norm(flat, [0, 5], [3], 1, backend=b)
    yield "seg_strided_flat", lambda b: ops.segment_grad_norm(flat[::2], [0, 5], [0], 1, backend=b)
    yield "seg_2d_flat", lambda b: ops.segment_grad_norm(r(2, 5), [0, 5], [0], 1, backend=b)
    yield (
        "seg_float64_flat",
        lambda b: ops.segment_grad_norm(flat.double(), [0, 5], [0], 1, backend=b),
    )
    yield "seg_long_offsets", lambda b: ops.segment_grad_norm(flat, [0, 5, 6], [0], 1, backend=b)
    yield (
        "seg_int32_offsets",
        lambda b: ops.segment_grad_norm(
            flat, torch.tensor([0, 5], dtype=torch.int32), [0], 1, backend=b
        ),
    )
    yield (
        "seg_negative_num_groups",
        lambda b: ops.segment_grad_norm(flat, [0, 5], [0], -2, backend=b),
    )
    yield (
        "seg_requires_grad",
        lambda b: ops.segment_grad_norm(r(10).requires_grad_(), [0, 5], [0], 1, backend=b),
    )


BAD_IDS = [name for name, _ in _bad_calls("cpu")]


def _outcome(call, backend):
    try:
        call(backend)
    except Exception as e:  # noqa: BLE001  (the type is what is compared)
        return type(e), str(e)
    return None


@pytest.mark.parametrize("case_id", BAD_IDS)
@pytest.mark.parametrize("device", DEVICES)
def test_same_error_on_every_backend(device, case_id):
    call = dict(_bad_calls(device))[case_id]
    got = {b: _outcome(call, b) for b in _backends(device)}
    want = got["native"]
    assert want is not None, f"{case_id}: the compiled kernel accepted it"
    assert want[0] in (TypeError, ValueError, IndexError, RuntimeError)
    for backend, outcome in got.items():
        assert outcome == want, f"{case_id}: {backend} {outcome} != native {want}"


def test_messages_name_the_argument():
    # A few messages spelled out: dtypes as Python prints them, shapes as lists.
    ts = [torch.randn(3), torch.randn(4)]
    with pytest.raises(
        TypeError, match=r"^grouped_grad_norm: tensors\[1\] has dtype torch\.float64;"
    ):
        ops.grouped_grad_norm([ts[0], ts[1].double()], [0, 0], 1)
    with pytest.raises(
        ValueError, match=r"group_index must be 1-D with 2 entries, got shape \[1, 2\]$"
    ):
        ops.grouped_grad_norm(ts, torch.zeros(1, 2, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match=r"table must be float32, got torch\.float16$"):
        ops.grouped_sq_norm_accumulate_(ts, [0, 0], torch.zeros(1).half())
    with pytest.raises(RuntimeError, match=r"not differentiable, but tensors\[0\] requires grad"):
        ops.grouped_sq_norm_accumulate_([ts[0].requires_grad_()], [0], torch.zeros(1))


def test_no_grad_mode_lifts_the_requires_grad_rule():
    # Norms of parameters for logging: fine under no_grad, and nothing is recorded.
    p = torch.randn(10, requires_grad=True)
    for backend in _backends("cpu"):
        with torch.no_grad():
            table = torch.zeros(2)
            ops.grouped_sq_norm_accumulate_([p], [1], table, backend=backend)
            seg = ops.segment_grad_norm(p, [0, 4, 10], [0, 1], 2, backend=backend)
        assert not table.requires_grad and not seg.requires_grad
        want = torch.stack([p[:4].norm(), p[4:].norm()]).detach()
        torch.testing.assert_close(seg, want)
        torch.testing.assert_close(table[1], p.detach().square().sum())


@pytest.mark.parametrize("backend", ["native", "reference", "triton"])
def test_wrapper_rejects_what_the_ops_cannot_take(backend):
    if backend == "triton" and not (triton_usable() and not HAS_CUDA):
        pytest.skip("Triton runs on CUDA tensors here; the wrapper checks are device-independent")
    ts = [torch.randn(3), torch.randn(4)]
    # p.grad of an unused parameter: named, on every backend.
    with pytest.raises(TypeError, match=r"tensors\[1\] is None .*p\.grad is not None"):
        ops.grouped_grad_norm([ts[0], None, ts[1]], [0, 0, 0], 1, backend=backend)
    with pytest.raises(TypeError, match=r"tensors\[0\] is None"):
        ops.grouped_sq_norm_accumulate_([None], [0], torch.zeros(1), backend=backend)
    with pytest.raises(TypeError, match=r"tensors\[1\] must be a Tensor, got list"):
        ops.grouped_grad_norm([ts[0], [1.0, 2.0]], [0, 0], 1, backend=backend)
    # One tensor where a list belongs would be read as its rows.
    with pytest.raises(TypeError, match="tensors must be a list or tuple of Tensors, got a Tensor"):
        ops.grouped_grad_norm(torch.randn(2, 3), [0, 0], 1, backend=backend)
    with pytest.raises(TypeError, match="tensors must be a list or tuple of Tensors, got int"):
        ops.grouped_grad_norm(3, [0], 1, backend=backend)
    # Float indices were truncated silently (0.7 -> group 0).
    with pytest.raises(TypeError, match=r"group_index\[0\] must be an int, got 0\.7"):
        ops.grouped_grad_norm(ts, [0.7, 1], 2, backend=backend)
    with pytest.raises(TypeError, match=r"group_index\[1\] must be an int, got True"):
        ops.grouped_grad_norm(ts, [0, True], 2, backend=backend)
    with pytest.raises(ValueError, match=r"group_index\[1\] = 9223372036854775808 does not fit"):
        ops.grouped_grad_norm(ts, [0, 2**63], 2, backend=backend)
    with pytest.raises(TypeError, match="group_index must be a CPU int64 tensor or a list of ints"):
        ops.grouped_grad_norm(ts, 0, 2, backend=backend)
    with pytest.raises(TypeError, match=r"num_groups must be an int, got 2\.0"):
        ops.grouped_grad_norm(ts, [0, 1], 2.0, backend=backend)
    with pytest.raises(TypeError, match="squared must be a bool, got 1"):
        ops.grouped_grad_norm(ts, [0, 1], 2, squared=1, backend=backend)
    with pytest.raises(TypeError, match="table must be a Tensor, got list"):
        ops.grouped_sq_norm_accumulate_(ts, [0, 1], [0.0, 0.0], backend=backend)
    with pytest.raises(TypeError, match="flat must be a Tensor, got list"):
        ops.segment_grad_norm([1.0, 2.0], [0, 2], [0], 1, backend=backend)
    with pytest.raises(TypeError, match=r"offsets\[1\] must be an int, got 2\.5"):
        ops.segment_grad_norm(torch.ones(4), [0, 2.5], [0], 1, backend=backend)
    with pytest.raises(TypeError, match=r"group_of_segment\[0\] must be an int, got 0\.0"):
        ops.segment_grad_norm(torch.ones(4), [0, 2], [0.0], 1, backend=backend)
    # Accepted: tuples, generators, numpy ints, CPU index tensors.
    np = pytest.importorskip("numpy")
    want = ops.grouped_grad_norm(ts, [0, 1], 2, backend="reference")
    got = ops.grouped_grad_norm((t for t in ts), np.array([0, 1]), np.int64(2), backend=backend)
    torch.testing.assert_close(got, want)


def _fake_cases():
    """(id, eager call, fake call) of the rules the fakes can check (no index values)."""
    ggn, acc, seg = (
        torch.ops.pada.grouped_grad_norm,
        torch.ops.pada.grouped_sq_norm_accumulate_,
        torch.ops.pada.segment_grad_norm,
    )
    i64 = lambda *v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    yield "dtype", lambda: ggn([torch.ones(3), torch.ones(3).double()], i64(0, 0), 1)
    yield "length", lambda: ggn([torch.ones(3)], i64(0, 0), 1)
    yield "num_groups", lambda: ggn([torch.ones(3)], i64(0), -1)
    yield "index_dtype", lambda: ggn([torch.ones(3)], torch.zeros(1, dtype=torch.int32), 1)
    yield "table_dtype", lambda: acc([torch.ones(3)], i64(0), torch.zeros(1).double())
    yield "table_shape", lambda: acc([torch.ones(3)], i64(0), torch.zeros(1, 1))
    yield "flat_strided", lambda: seg(torch.ones(10)[::2], i64(0, 2), i64(0), 1, False)
    yield "flat_dtype", lambda: seg(torch.ones(10).double(), i64(0, 2), i64(0), 1, False)
    yield "offsets_length", lambda: seg(torch.ones(10), i64(0, 2, 3), i64(0), 1, False)


@pytest.mark.parametrize("case_id", [c for c, _ in _fake_cases()])
def test_fake_kernels_raise_like_the_compiled_ones(case_id):
    call = dict(_fake_cases())[case_id]
    with pytest.raises(Exception) as eager:
        call()
    with FakeTensorMode(), pytest.raises(Exception) as fake:
        call()  # the tensors are made (fake) inside the mode
    assert (fake.type, str(fake.value)) == (eager.type, str(eager.value))


def test_reference_compiles_fullgraph():
    # The checks read list indices as given, not tensor data: dynamo traces
    # the reference (and the wrappers) in one graph.
    ts = [torch.randn(3), torch.randn(40)]
    flat = torch.randn(100)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(ts, flat):
        table = torch.zeros(2)
        ops.grouped_sq_norm_accumulate_(ts, [0, 1], table, backend="reference")
        seg = ops.segment_grad_norm(flat, [0, 10, 99], [1, 0], 2, backend="reference")
        return ops.grouped_grad_norm(ts, [1, 0], 2, backend="reference"), table, seg

    norms, table, seg = f(ts, flat)
    torch.testing.assert_close(norms, ops.grouped_grad_norm(ts, [1, 0], 2))
    torch.testing.assert_close(table, ops.grouped_grad_norm(ts, [0, 1], 2, squared=True))
    torch.testing.assert_close(seg, ops.segment_grad_norm(flat, [0, 10, 99], [1, 0], 2))


@pytest.mark.skipif(not triton_usable() or HAS_CUDA, reason="Triton on CPU tensors: interpreted")
def test_raw_triton_ops_check_like_the_compiled_ones():
    # The rules live in the kernels, not in the wrappers: calling the op with
    # its Triton kernel directly cannot skip them.

    gi = torch.tensor([0, 3])
    ts = [torch.ones(3), torch.ones(2)]
    cases = [
        (GGN, (ts, gi, 2, False)),
        (GGN, ([ts[0], ts[1].double()], torch.tensor([0, 0]), 1, False)),
        (ACC, (ts, gi, torch.zeros(2))),
        (ACC, (ts, torch.tensor([0, 0]), torch.zeros(2, 1))),
        (SEG, (torch.ones(5), torch.tensor([0, 3, 2]), torch.tensor([0, 0]), 1, False)),
        (SEG, (torch.ones(5), torch.tensor([0, 6]), torch.tensor([0]), 1, False)),
    ]
    for name, args in cases:
        with pytest.raises(Exception) as want:
            getattr(torch.ops.pada, name)(*args)
        with pytest.raises(Exception) as got, triton_selected(name):
            getattr(torch.ops.pada, name)(*args)
        assert (got.type, str(got.value)) == (want.type, str(want.value)), name
