"""pada_ext.ops.importance_update_ against its sequential reference, on every
device and backend; bit identity with the CPU kernel (the README's claim),
CUDA graphs, streams, devices, no host sync, opcheck and torch.compile."""

import os

import conftest
import pytest
import torch
from conftest import BACKEND_DEVICES, COMPILE_CASES, DEVICES, GPU_TEST_BACKENDS, requires_triton

import pada_ext
from pada_ext import ops

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DECAYS = [0.0, 0.5, 0.9, 1.0, 0.3]
SHAPES = [(1, 5), (10, 64), (1000, 256), (50, 2000)]
# Triton's interpreter runs a program per batch entry at milliseconds each.
INTERPRETED = not conftest.HAS_CUDA


def fresh(size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(size, generator=g).to(device)
    visited = (torch.rand(size, generator=g) < 0.5).to(device)
    status = torch.zeros(2, dtype=torch.int64, device=device)
    return scores, visited, status


def batch(size, n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(size, (n,), generator=g)  # many repeats when size < n
    values = (torch.rand(n, generator=g) * 3).to(dtype)
    values[:: max(n // 3, 1)][1:] = float("nan")  # a few skipped values
    return index, values


def updated_on_cpu(size, index, values, decay, backend="native"):
    """fresh(size) on the CPU after one update by `backend`."""
    state = fresh(size, "cpu")
    ops.importance_update_(*state, index, values, decay, backend=backend)
    return state


def assert_same_bits(got, want):
    for a, b in zip(got, want):
        a = a.cpu()
        if a.dtype == torch.float32:
            a, b = a.view(torch.int32), b.view(torch.int32)
        assert torch.equal(a, b)


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,n", SHAPES)
@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_matches_reference_and_cpu_bits(device, backend, size, n, dtype, decay):
    if backend == "triton" and INTERPRETED and (n > 64 or dtype in DTYPES[2:]):
        pytest.skip("too many programs for Triton's interpreter")
    index, values = batch(size, n, dtype, size + n)
    got = fresh(size, device)
    ops.importance_update_(*got, index.to(device), values.to(device), decay, backend=backend)
    want = updated_on_cpu(size, index, values, decay, backend="reference")
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0)
    # The CPU kernel's bits on every backend and device (decay in float64 everywhere).
    assert_same_bits(got, updated_on_cpu(size, index, values, decay))


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


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_non_finite_values_are_skipped_and_counted(device, backend):
    scores, visited, status = fresh(4, device)
    before = scores.clone()
    index = torch.tensor([0, 1, 1, 3], device=device)
    values = torch.tensor([float("nan"), float("inf"), 2.0, float("-inf")], device=device)
    ops.importance_update_(scores, visited, status, index, values, 0.5, backend=backend)
    assert status.tolist() == [0, 3]
    torch.testing.assert_close(scores[[0, 2, 3]], before[[0, 2, 3]])
    assert torch.isfinite(scores).all() and bool(visited[1])


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_empty_batch_and_table(device, backend):
    scores, visited, status = fresh(3, device)
    before = scores.clone()
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    ops.importance_update_(scores, visited, status, empty, empty.float(), 0.5, backend=backend)
    assert torch.equal(scores, before) and status.tolist() == [0, 0]
    if device == "cuda":  # an empty table: every index is out of range, counted
        s, v, st = fresh(0, device)
        index = torch.tensor([0, 2], device=device)
        ops.importance_update_(s, v, st, index, torch.ones(2, device=device), 0.5, backend=backend)
        assert st.tolist() == [2, 0]


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_out_of_range_index_raises_before_any_change(backend):
    scores, visited, status = fresh(5, "cpu")
    before = (scores.clone(), visited.clone())
    with pytest.raises(IndexError, match=r"index\[2\] = 5 is out of range for a table of 5"):
        ops.importance_update_(
            scores, visited, status, torch.tensor([0, 1, 5]), torch.ones(3), 0.5, backend=backend
        )
    torch.testing.assert_close(scores, before[0])
    torch.testing.assert_close(visited, before[1])
    with pytest.raises(IndexError, match="index\\[0\\] = -1"):
        ops.importance_update_(
            scores, visited, status, torch.tensor([-1]), torch.ones(1), 0.5, backend=backend
        )


@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_cuda_out_of_range_counted_and_skipped(backend):
    # No raise on the GPU (it would need a host sync): counted in status[0],
    # and the in-range entries are applied as if the bad ones were absent.
    index = torch.tensor([3, -1, 3, 10, 0, 3, 2**40])
    values = torch.tensor([1.0, 9.0, 2.0, 9.0, 4.0, float("nan"), 9.0])
    got = fresh(10, "cuda")
    index_d, values_d = index.cuda(), values.cuda()
    with conftest.no_sync("cuda"):
        ops.importance_update_(*got, index_d, values_d, 0.9, backend=backend)
    keep = (index >= 0) & (index < 10)
    want = updated_on_cpu(10, index[keep], values[keep], 0.9)
    assert got[2].tolist() == [3, 1]
    assert_same_bits(got[:2], want[:2])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"values": torch.ones(2)}, ValueError, "one value per index"),
        ({"scores": torch.zeros(5, dtype=torch.float64)}, ValueError, "float32"),
        ({"visited": torch.zeros(4, dtype=torch.bool)}, ValueError, "shaped like scores"),
        ({"values": torch.ones(3, dtype=torch.int64)}, TypeError, "floating point"),
        ({"decay": 1.5}, ValueError, "decay"),
        ({"decay": float("nan")}, ValueError, "decay"),
        ({"index": torch.zeros(3)}, ValueError, "int64"),
        ({"status": torch.zeros(3, dtype=torch.int64)}, ValueError, "two-element"),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_bad_arguments(device, kwargs, error, match):
    args = conftest.importance_update_args(**kwargs)
    args = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(error, match=match):
        torch.ops.pada.importance_update_(**args)


@conftest.requires_cuda
@pytest.mark.cuda
def test_cuda_rejects_mixed_devices():
    scores, visited, status = fresh(5, "cuda")
    with pytest.raises(RuntimeError, match="scores' device"):
        torch.ops.pada.importance_update_(
            scores, visited, status, torch.tensor([0]), torch.ones(1, device="cuda"), 0.5
        )


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_int32_and_strided_inputs(device, backend):
    scores, visited, status = fresh(4, device)
    index = torch.tensor([3, 9, 1, 9, 3, 9], dtype=torch.int32, device=device)[::2]
    values = torch.tensor([7.0, 0.0, 5.0, 0.0, 6.0, 0.0], device=device)[::2]
    visited.zero_()
    ops.importance_update_(scores, visited, status, index, values, 0.0, backend=backend)
    assert scores[3].item() == 6.0 and scores[1].item() == 5.0


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for decay in (0.0, 0.5, 0.9):
        scores, visited, status = fresh(20, device)
        index = torch.tensor([3, 3, 19, 0, 3], device=device)
        values = torch.tensor([1.0, 2.0, 3.0, float("nan"), 5.0], device=device)
        torch.library.opcheck(
            torch.ops.pada.importance_update_.default,
            (scores, visited, status, index, values, decay),
        )


@pytest.mark.parametrize("device,backend,compiler", COMPILE_CASES)
def test_torch_compile_fullgraph(device, backend, compiler):
    def step(scores, visited, status, index, values):
        ops.importance_update_(scores, visited, status, index, values * 2, 0.9, backend=backend)
        return scores.sum()

    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    a, b = fresh(10, device), fresh(10, device)
    index = torch.tensor([1, 2, 1], device=device)
    values = torch.tensor([1.0, 2.0, 3.0], device=device)
    torch.testing.assert_close(compiled(*a, index, values), step(*b, index, values))
    assert_same_bits(a, [t.cpu() for t in b])


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
def test_no_host_sync(device, backend):
    index, values = batch(50, 300, torch.float32, 5)
    index, values = index.to(device), values.to(device)
    state = fresh(50, device)
    ops.importance_update_(*state, index, values, 0.5, backend=backend)  # compiles Triton first
    with conftest.no_sync(device):
        ops.importance_update_(*state, index, values, 0.5, backend=backend)


@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_non_default_stream(backend):
    index, values = batch(50, 2000, torch.float16, 6)
    got = fresh(50, "cuda")
    index_d, values_d = index.cuda(), values.cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ops.importance_update_(*got, index_d, values_d, 0.9, backend=backend)
    side.synchronize()
    assert_same_bits(got, updated_on_cpu(50, index, values, 0.9))


@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_cuda_graph_replay(backend):
    # Nothing host-side is read at replay: new values in the same tensors give
    # the sequential result of each replay in turn.
    index, values = batch(30, 500, torch.float32, 7)
    index_d, values_d = index.cuda(), values.cuda()
    got = fresh(30, "cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (and Triton's compile) before capture
        ops.importance_update_(*fresh(30, "cuda"), index_d, values_d, 0.9, backend=backend)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ops.importance_update_(*got, index_d, values_d, 0.9, backend=backend)
    want = fresh(30, "cpu")
    for step in range(3):
        new_index, new_values = batch(30, 500, torch.float32, 20 + step)
        index_d.copy_(new_index)
        values_d.copy_(new_values)
        graph.replay()
        ops.importance_update_(*want, new_index, new_values, 0.9, backend="native")
        torch.cuda.synchronize()
        assert_same_bits(got, want)


@conftest.requires_two_gpus
@pytest.mark.parametrize("backend", GPU_TEST_BACKENDS)
def test_second_gpu(backend):
    index, values = batch(40, 300, torch.float32, 8)
    got = fresh(40, "cuda:1")
    with torch.cuda.device(0):
        ops.importance_update_(*got, index.to("cuda:1"), values.to("cuda:1"), 0.9, backend=backend)
    assert_same_bits(got, updated_on_cpu(40, index, values, 0.9))
    with pytest.raises((RuntimeError, ValueError), match="device"):
        ops.importance_update_(*got, index.to("cuda:0"), values.to("cuda:1"), 0.9, backend=backend)


@requires_triton
@pytest.mark.triton
def test_triton_errors_and_opcheck():
    dev = conftest.triton_device()
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
    with conftest.triton_selected("importance_update_"):
        torch.library.opcheck(
            torch.ops.pada.importance_update_.default,
            (
                scores,
                visited,
                status,
                torch.tensor([1, 1, 4], device=dev),
                torch.tensor([1.0, 2.0, 3.0], device=dev),
                0.9,
            ),
        )


@requires_triton
@pytest.mark.triton
def test_triton_decay_is_float64_when_compiled():
    # The interpreter keeps a Python float as float64 and would hide an fp32
    # decay: check what the compiler gets, with no GPU needed.
    import inspect

    from pada_ext.triton import importance_update as mod

    params = list(inspect.signature(mod.importance_update_kernel.fn).parameters)
    assert "decay_ptr" in params and "decay" not in params
    for spec in mod.aot_specs():
        assert spec["signature"]["decay_ptr"] == "*fp64"
        assert set(spec["signature"]) == set(params)


@requires_triton
@pytest.mark.triton
def test_triton_aot_compiles_for_sm90():
    # The specs are the signatures the launcher produces; each must compile.
    here = os.path.dirname(os.path.dirname(os.path.abspath(pada_ext.__file__)))
    tool = os.path.join(here, "tools", "compile_triton_aot.py")
    if not os.path.exists(tool):
        pytest.skip("tools/ is not next to the package under test")
    done = conftest.run_python(
        tool, "--module", "pada_ext.triton.importance_update", timeout=300, interpret_triton=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "5 kernel(s) compiled" in done.stdout
