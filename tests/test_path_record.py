"""pada_ext.ops.path_record_ (PathSampler.record's one op) against its
reference (the torch code it replaced), on every device and backend: every
norm and rule, AMP scales, off-path cells, missing and non-finite gradients;
bit identity with the torch ops where they round alike; errors that name the
argument; opcheck; the same bits at any thread count; no host sync."""

import pytest
import torch
from conftest import (
    BACKEND_DEVICES,
    DEVICES,
    no_sync,
    requires_triton,
    triton_device,
    triton_selected,
)

from pada_ext import _codes, ops
from pada_ext.reference import path_record as ref

NORMS = tuple(_codes.PATH_NORM)
RULES = tuple(_codes.PATH_RULE)
# Gradient sizes: below one 16-lane register, a ragged 256-lane block, whole
# blocks, and (native only) more than one 65536-element chunk.
SIZES = (3, 16, 300, 2304)
BIG = 70_000


def make_case(rows=2, k_ops=5, seed=0, device="cpu", big=False, dtypes=(torch.float32,)):
    """Gradients of a path (some None, one strided, mixed dtypes), each in an
    on-path cell; tables in a random state (off-path cells too)."""
    g = torch.Generator().manual_seed(seed)
    cells = rows * k_ops
    weights = torch.zeros(cells)
    on = torch.randperm(cells, generator=g)[: max(1, cells // 2)]
    weights[on] = 1.0 / torch.randint(1, 4, (on.numel(),), generator=g).float()
    grads, cell_index = [], []
    for i in range(3 * on.numel()):
        n = SIZES[i % len(SIZES)] if not (big and i == 1) else BIG
        t = torch.randn(n, generator=g).to(dtypes[i % len(dtypes)])
        if i == 2:
            t = torch.randn(n, 2, generator=g).to(dtypes[0]).t()[0]  # strided
        grads.append(None if i % 7 == 5 else t.to(device))
        cell_index.append(int(on[i % on.numel()]))
    tables = {
        "scores": (torch.rand(rows, k_ops, generator=g) * 3).to(device),
        "visited": (torch.rand(rows, k_ops, generator=g) < 0.5).to(device),
        "count": torch.randint(0, 4, (rows, k_ops), generator=g).float().to(device),
        "skipped": torch.randint(0, 3, (rows, k_ops), generator=g).to(device),
    }
    tables["count"][~tables["visited"]] = 0
    return grads, torch.tensor(cell_index), weights.view(rows, k_ops).to(device), tables


def run(backend, grads, cells, weights, tables, norm, rule, decay=0.9, grad_scale=None):
    out = {k: v.clone() for k, v in tables.items()}
    fn = ref.path_record_ if backend == "torch" else ops.path_record_
    if backend == "torch":
        fn(
            grads,
            cells,
            weights,
            *out.values(),
            _codes.PATH_NORM[norm],
            _codes.PATH_RULE[rule],
            decay,
            grad_scale,
        )
    else:
        fn(
            grads,
            cells,
            weights,
            *out.values(),
            norm=norm,
            rule=rule,
            decay=decay,
            grad_scale=grad_scale,
            backend=backend,
        )
    return out


def assert_tables(got, want):
    torch.testing.assert_close(got["scores"], want["scores"], equal_nan=True)
    for k in ("visited", "count", "skipped"):
        assert torch.equal(got[k].cpu(), want[k].cpu()), k


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES + [pytest.param("cpu", "reference")])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("rule", RULES)
def test_matches_the_reference(device, backend, norm, rule):
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    for seed, rows in ((0, 1), (1, 6)):
        case = make_case(rows, seed=seed, device=device, big=backend == "native", dtypes=dtypes)
        scale = torch.tensor([1024.0], device=device)
        for grad_scale in (None, scale):
            got = run(backend, *case, norm, rule, grad_scale=grad_scale)
            want = run("torch", *case, norm, rule, grad_scale=grad_scale)
            assert_tables(got, want)


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("rule", RULES)
def test_off_path_cells_are_left_alone_and_steps_land_on_path(device, backend, norm, rule):
    grads, cells, weights, tables = make_case(1, device=device)
    got = run(backend, grads, cells, weights, tables, norm, rule)
    off = weights == 0
    for k in tables:
        assert torch.equal(got[k][off], tables[k][off]), k
    assert got["visited"][~off].all()  # positive finite steps: every on-path cell took one


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_steps_are_skipped_and_counted(device, backend, norm, rule, bad):
    grads, cells, weights, tables = make_case(1, device=device)
    first = next(i for i, g in enumerate(grads) if g is not None)
    grads[first] = grads[first].clone()
    grads[first].view(-1)[0] = bad
    got = run(backend, grads, cells, weights, tables, norm, rule)
    assert_tables(got, run("torch", grads, cells, weights, tables, norm, rule))
    on = weights > 0
    hit = on if norm == "paper" else torch.zeros_like(on).view(-1)
    if norm == "l2":
        hit[cells[first]] = True
        hit = hit.view(on.shape)
    assert torch.equal(got["skipped"] - tables["skipped"], hit.long())
    assert torch.equal(got["scores"][hit], tables["scores"][hit])


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES)
@pytest.mark.parametrize("rule", RULES)
def test_missing_and_zero_gradients(device, backend, rule):
    grads, cells, weights, tables = make_case(1, device=device)
    for given in (
        [None] * len(grads),
        [torch.zeros_like(g) if g is not None else None for g in grads],
    ):
        for norm in NORMS:
            got = run(backend, given, cells, weights, tables, norm, rule)
            assert_tables(got, run("torch", given, cells, weights, tables, norm, rule))
    empty = run(backend, [], torch.zeros(0, dtype=torch.int64), weights, tables, "l2", rule)
    assert_tables(
        empty, run("torch", [], torch.zeros(0, dtype=torch.int64), weights, tables, "l2", rule)
    )


@pytest.mark.parametrize("rule", RULES)
def test_l2_bits_equal_the_torch_ops_it_replaced(rule):
    # The grouped norms of the compiled kernel, then PathSampler's old torch
    # ops: the same float32 operations, so the same bits (lerp's FMA included).
    # The square root is IEEE's (through float64, which rounds it the same):
    # torch's vectorised float32 sqrt may be 1 ulp off.
    grads, cells, weights, tables = make_case(6, seed=3)
    keep = [i for i, g in enumerate(grads) if g is not None]
    sq = ops.grouped_grad_norm([grads[i] for i in keep], cells[keep], weights.numel(), squared=True)
    step = (sq.view_as(weights) * weights).double().sqrt().float() / torch.tensor([8.0])
    want = {k: v.clone() for k, v in tables.items()}
    ref.update_scores_(step, weights > 0, *want.values(), _codes.PATH_RULE[rule], 0.9)
    got = run("native", grads, cells, weights, tables, "l2", rule, grad_scale=torch.tensor([8.0]))
    for k in tables:
        assert torch.equal(got[k], want[k]), k


def test_the_same_bits_at_any_thread_count():
    case = make_case(6, seed=4, big=True, dtypes=(torch.float32, torch.bfloat16))
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append([run("native", *case, norm, "ema") for norm in NORMS])
    finally:
        torch.set_num_threads(before)
    for out in outs[1:]:
        for a, b in zip(out, outs[0]):
            for k in a:
                assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    grads, cells, weights, tables = make_case(2, device=device)
    for norm in (0, 1):
        for rule in (0, 1, 2):
            for scale in (None, torch.tensor([4.0], device=device)):
                t = {k: v.clone() for k, v in tables.items()}
                torch.library.opcheck(
                    torch.ops.pada.path_record_.default,
                    (grads, cells, weights, *t.values(), norm, rule, 0.9, scale),
                )


@requires_triton
@pytest.mark.triton
def test_triton_opcheck():
    grads, cells, weights, tables = make_case(1, device=triton_device())
    with triton_selected("path_record_"):
        torch.library.opcheck(
            torch.ops.pada.path_record_.default,
            (grads[:4], cells[:4], weights, *tables.values(), 1, 1, 0.9, None),
        )


def bad_args(device):
    grads, cells, weights, tables = make_case(1, device=device)
    base = dict(grads=grads, cells=cells, weights=weights, **tables, norm="l2", rule="ema")
    cases = [
        (dict(scores=tables["scores"].double()), TypeError, "scores must be torch.float32"),
        (dict(visited=tables["visited"].float()), TypeError, "visited must be torch.bool"),
        (dict(count=tables["count"][:, :2]), ValueError, "count must be contiguous and shaped"),
        (dict(skipped=tables["skipped"].int()), TypeError, "skipped must be torch.int64"),
        (dict(weights=weights.t()), ValueError, "weights must be contiguous and shaped"),
        (dict(cells=cells.int()), TypeError, "cell_index must be int64"),
        (dict(cells=cells[:-1]), ValueError, "cell_index must be 1-D with one entry per gradient"),
        (
            dict(cells=torch.where(torch.arange(len(cells)) == 2, 99, cells)),
            IndexError,
            r"cell_index\[2\] = 99 \(for grads\[2\]\) is out of range for 5 cells",
        ),
        (
            dict(grads=[g if i != 1 else g.double() for i, g in enumerate(grads)]),
            TypeError,
            r"grads\[1\] has dtype torch.float64",
        ),
        (dict(decay=1.5), ValueError, r"decay must be in \[0, 1\]"),
        (
            dict(grad_scale=torch.ones(2, device=device)),
            ValueError,
            "grad_scale must have one element",
        ),
    ]
    for change, kind, match in cases:
        yield {**base, **change}, kind, match


def call(backend, a):
    ops.path_record_(
        a["grads"],
        a["cells"],
        a["weights"],
        a["scores"],
        a["visited"],
        a["count"],
        a["skipped"],
        norm=a["norm"],
        rule=a["rule"],
        decay=a.get("decay", 0.9),
        grad_scale=a.get("grad_scale"),
        backend=backend,
    )


@pytest.mark.parametrize("device,backend", BACKEND_DEVICES + [pytest.param("cpu", "reference")])
def test_errors_name_the_argument_and_change_nothing(device, backend):
    for a, kind, match in bad_args(device):
        before = {k: a[k].clone() for k in ("scores", "visited", "count", "skipped")}
        with pytest.raises(kind, match=match):
            call(backend, a)
        for k, v in before.items():
            assert torch.equal(a[k], v), k
    with pytest.raises(ValueError, match="rule must be one of"):
        call(
            backend,
            {**next(bad_args(device))[0], "scores": make_case(1)[3]["scores"], "rule": "max"},
        )


def test_raw_op_codes_are_checked():
    grads, cells, weights, tables = make_case(1)
    with pytest.raises(ValueError, match=r"norm must be 0 \(l2\) or 1 \(paper\), got 2"):
        torch.ops.pada.path_record_(grads, cells, weights, *tables.values(), 2, 1, 0.9)
    with pytest.raises(
        ValueError, match=r"rule must be 0 \(paper\), 1 \(ema\) or 2 \(mean\), got 3"
    ):
        torch.ops.pada.path_record_(grads, cells, weights, *tables.values(), 0, 3, 0.9)


@pytest.mark.parametrize("device", DEVICES)
def test_no_host_sync(device):
    grads, cells, weights, tables = make_case(6, device=device)
    with no_sync(device):
        for norm in NORMS:
            run(
                "native",
                grads,
                cells,
                weights,
                tables,
                norm,
                "ema",
                grad_scale=torch.tensor([2.0], device=device),
            )


@pytest.mark.parametrize("device", DEVICES)
def test_params_binding_reads_the_grads_as_the_op_takes_them(device):
    # pada_ext._C.path_record_params: PathSampler.record's call, the op on params[i].grad.
    from pada_ext import _C

    grads, cells, weights, tables = make_case(6, seed=5, device=device)
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.empty(0 if g is None else g.shape, device=device))
        p.grad = g
        params.append(p)
    for norm in NORMS:
        for rule in RULES:
            want = run("native", grads, cells, weights, tables, norm, rule)
            got = {k: v.clone() for k, v in tables.items()}
            codes = (_codes.PATH_NORM[norm], _codes.PATH_RULE[rule], 0.9)
            _C.path_record_params(params, cells, weights, *got.values(), *codes, None)
            for k in tables:
                assert torch.equal(got[k], want[k]), k
    with pytest.raises(TypeError, match=r"params\[1\] is not a Tensor"):
        _C.path_record_params([params[0], 3], cells[:2], weights, *got.values(), 0, 1, 0.9, None)
    with pytest.raises(IndexError, match=r"cell_index\[0\] = 99"):
        bad = torch.full_like(cells, 99)
        _C.path_record_params(params, bad, weights, *got.values(), 0, 1, 0.9, None)
