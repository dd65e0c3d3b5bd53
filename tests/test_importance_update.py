"""pada_ext.ops.importance_update_ against its sequential reference."""

import pytest
import torch
from conftest import DEVICES, requires_triton, triton_device

from pada_ext import ops


def fresh(size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(size, generator=g).to(device)
    visited = (torch.rand(size, generator=g) < 0.5).to(device)
    status = torch.zeros(2, dtype=torch.int64, device=device)
    return scores, visited, status


def run_both(size, index, values, decay, device, seed=0):
    got = fresh(size, device, seed)
    want = fresh(size, "cpu", seed)
    ops.importance_update_(*got, index.to(device), values.to(device), decay)
    ops.importance_update_(*want, index, values, decay, backend="reference")
    return [t.cpu() for t in got], want


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("size,batch", [(1, 5), (10, 64), (1000, 256), (50, 2000)])
def test_matches_reference(size, batch, dtype, decay, device):
    g = torch.Generator().manual_seed(size + batch)
    index = torch.randint(size, (batch,), generator=g)  # many repeats when size < batch
    values = (torch.rand(batch, generator=g) * 3).to(dtype)
    got, want = run_both(size, index, values, decay, device)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got[1], want[1])
    torch.testing.assert_close(got[2], want[2])


def test_authors_rule_in_visit_order():
    scores = torch.zeros(3)
    visited = torch.zeros(3, dtype=torch.bool)
    status = torch.zeros(2, dtype=torch.int64)
    ops.importance_update_(
        scores, visited, status, torch.tensor([2, 0, 2, 2]), torch.tensor([4.0, 1.0, 2.0, 8.0]), 0.5
    )
    # index 2: first visit stores 4, then (4 + 2) / 2 = 3, then (3 + 8) / 2 = 5.5
    torch.testing.assert_close(scores, torch.tensor([1.0, 0.0, 5.5]))
    assert visited.tolist() == [True, False, True]


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_values_are_skipped_and_counted(device):
    scores, visited, status = fresh(4, device)
    before = scores.clone()
    index = torch.tensor([0, 1, 1, 3], device=device)
    values = torch.tensor([float("nan"), float("inf"), 2.0, float("-inf")], device=device)
    ops.importance_update_(scores, visited, status, index, values, 0.5)
    assert status.tolist() == [0, 3]
    torch.testing.assert_close(scores[[0, 2, 3]], before[[0, 2, 3]])
    assert torch.isfinite(scores).all()


def test_out_of_range_index_raises_before_any_change():
    scores, visited, status = fresh(5, "cpu")
    before = (scores.clone(), visited.clone())
    with pytest.raises(IndexError, match=r"index\[2\] = 5 is out of range for a table of 5"):
        ops.importance_update_(scores, visited, status, torch.tensor([0, 1, 5]), torch.ones(3), 0.5)
    torch.testing.assert_close(scores, before[0])
    torch.testing.assert_close(visited, before[1])
    with pytest.raises(IndexError, match="index\\[0\\] = -1"):
        ops.importance_update_(scores, visited, status, torch.tensor([-1]), torch.ones(1), 0.5)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"values": torch.ones(2)}, ValueError, "one value per index"),
        ({"scores": torch.zeros(5, dtype=torch.float64)}, ValueError, "float32"),
        ({"visited": torch.zeros(4, dtype=torch.bool)}, ValueError, "shaped like scores"),
        ({"values": torch.ones(3, dtype=torch.int64)}, TypeError, "floating point"),
        ({"decay": 1.5}, ValueError, "decay"),
        ({"index": torch.zeros(3)}, ValueError, "int64"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {
        "scores": torch.zeros(5),
        "visited": torch.zeros(5, dtype=torch.bool),
        "status": torch.zeros(2, dtype=torch.int64),
        "index": torch.tensor([0, 1, 2]),
        "values": torch.ones(3),
        "decay": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        torch.ops.pada.importance_update_(**args)


def test_int32_index_accepted():
    scores, visited, status = fresh(4, "cpu")
    ops.importance_update_(
        scores, visited, status, torch.tensor([3], dtype=torch.int32), torch.tensor([7.0]), 0.0
    )
    assert float(scores[3]) == 7.0


def test_opcheck():
    for decay in (0.0, 0.5):
        scores, visited, status = fresh(20, "cpu")
        index = torch.tensor([3, 3, 19, 0, 3])
        values = torch.tensor([1.0, 2.0, 3.0, float("nan"), 5.0])
        torch.library.opcheck(
            torch.ops.pada.importance_update_.default,
            (scores, visited, status, index, values, decay),
        )


def test_torch_compile_fullgraph():
    def step(scores, visited, status, index, values):
        ops.importance_update_(scores, visited, status, index, values * 2, 0.5)
        return scores.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a, b = fresh(10, "cpu"), fresh(10, "cpu")
    index, values = torch.tensor([1, 2, 1]), torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(compiled(*a, index, values), step(*b, index, values))
    torch.testing.assert_close(a[0], b[0])


@requires_triton
@pytest.mark.triton
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_triton_bit_identical_to_native(decay, dtype):
    dev = triton_device()
    g = torch.Generator().manual_seed(3)
    index = torch.randint(12, (40,), generator=g)
    values = (torch.rand(40, generator=g) * 3).to(dtype)
    values[[5, 17]] = float("nan")
    got = [t.to(dev) for t in fresh(12, "cpu", seed=1)]
    want = fresh(12, "cpu", seed=1)
    ops.importance_update_(*got, index.to(dev), values.to(dev), decay, backend="triton")
    ops.importance_update_(*want, index, values, decay, backend="native")
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0)


@requires_triton
@pytest.mark.triton
def test_triton_errors_and_opcheck():
    dev = triton_device()
    scores, visited, status = fresh(5, dev)
    before = scores.clone()
    if dev == "cpu":
        with pytest.raises(IndexError, match=r"index\[1\] = 5 is out of range"):
            ops.importance_update_(
                scores, visited, status, torch.tensor([0, 5]), torch.ones(2), 0.5, backend="triton"
            )
        torch.testing.assert_close(scores, before)
    with pytest.raises(ValueError, match="one value per index"):
        ops.importance_update_(
            scores,
            visited,
            status,
            torch.tensor([0, 1], device=dev),
            torch.ones(3, device=dev),
            0.5,
            backend="triton",
        )
    from pada_ext.triton import importance_update  # noqa: F401

    torch.library.opcheck(
        torch.ops.pada_triton.importance_update_.default,
        (
            scores,
            visited,
            status,
            torch.tensor([1, 1, 4], device=dev),
            torch.tensor([1.0, 2.0, 3.0], device=dev),
            0.5,
        ),
    )
