"""pada_ext.PathSampler on a NAS-Bench-201-style supernet: the authors' rule,
the other rules and norms, sampling statistics, checkpoints, distributed use."""

import contextlib

import pytest
import torch
import torch.multiprocessing as mp
from conftest import DEVICES, no_sync, requires_cuda
from pada_nas.nb201 import CONV_OPS, Supernet
from scipy import stats

from pada_ext import PathSampler

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_supernet(seed=0, cells=2):
    torch.manual_seed(seed)
    return Supernet(channels=4, cells=cells, num_classes=3)


def backward(model, path, seed, set_to_none=True):
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = torch.randn(6, 3, 8, 8, generator=g).to(device)
    y = torch.randint(3, (6,), generator=g).to(device)
    model.zero_grad(set_to_none=set_to_none)
    torch.nn.functional.cross_entropy(model(x, path), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)


def authors_step(model, path, scores):
    """The authors' per-step path rule, restated in plain Python: for every cell
    and edge of the path whose op is a conv, the norms of the conv weight's and
    bias's gradients; per op, their sum over cells divided by the number of edges
    that use the op; a nonzero result is averaged into the op's score."""
    per_op = [0.0] * 5
    for cell in model.cells:
        for k, op in enumerate(path):
            if op in CONV_OPS:
                conv = cell.edges[k][op][1]
                per_op[op] += conv.weight.grad.norm().item() + conv.bias.grad.norm().item()
    for op in range(5):
        if per_op[op] != 0.0:
            scores[op] = (scores[op] + per_op[op] / path.count(op)) / 2
    return scores


def test_paper_configuration_replays_the_authors_rule():
    model = tiny_supernet()
    epochs = 4
    sampler = PathSampler.paper(model.decisions(), epochs=epochs, seed=3)
    expected = [0.0] * 5
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        if epoch > 0:  # built at the end of the last epoch, with its delta
            delta = (epoch - 1) / epochs
            s = torch.tensor(expected, dtype=torch.float64)
            want = delta * s / s.sum() + (1 - delta) / 5
            torch.testing.assert_close(sampler.probabilities[0], want, rtol=1e-5, atol=1e-7)
        expected = [0.0] * 5  # the authors restart the scores every epoch
        for step in range(5):
            path = sampler.sample()
            backward(model, path, seed=100 * epoch + step)
            sampler.record(path)
            expected = authors_step(model, path, expected)
            torch.testing.assert_close(
                sampler.scores[0], torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-7
            )
    # Parameter-free ops never score: they keep the uniform share only.
    assert sampler.scores[0, [0, 1, 4]].eq(0).all()


def test_l2_norm_is_the_rms_over_the_edges_that_chose_the_op():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=1.0, norm="l2", rule="mean", seed=0)
    path = [3, 2, 3, 0, 1, 4]
    backward(model, path, seed=1)
    step = sampler.step_scores(path)[0]
    want = torch.zeros(5, dtype=torch.float64)
    for op in CONV_OPS:
        uses = [k for k, j in enumerate(path) if j == op]
        sq = sum(
            p.grad.double().square().sum()
            for k in uses
            for cell in model.cells
            for p in cell.edges[k][op].parameters()
        )
        want[op] = (sq / len(uses)).sqrt()
    torch.testing.assert_close(step.double(), want, rtol=1e-5, atol=1e-8)


def test_per_edge_distributions():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), shared=False, delta=1.0, rule="mean", seed=0)
    path = [2, 3, 0, 1, 4, 2]
    backward(model, path, seed=2)
    sampler.record(path)
    sampler.set_epoch(1)
    probs = sampler.probabilities
    assert probs.shape == (6, 5)
    # Edges whose chosen op has parameters put all the mass on it (delta = 1);
    # the others have no score and stay uniform.
    for k, j in enumerate(path):
        if j in CONV_OPS:
            assert probs[k, j] == 1.0
        else:
            torch.testing.assert_close(probs[k], torch.full((5,), 0.2, dtype=torch.float64))


@pytest.mark.parametrize("rule", ["ema", "mean", "paper"])
def test_rules(rule):
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.5, rule=rule, seed=0)
    path = [3, 3, 3, 3, 3, 3]
    steps = []
    for seed in range(3):
        backward(model, path, seed)
        steps.append(float(sampler.step_scores(path)[0, 3]))
        sampler.record(path)
    got = float(sampler.scores[0, 3])
    if rule == "ema":
        want = 0.9 * (0.9 * steps[0] + 0.1 * steps[1]) + 0.1 * steps[2]
    elif rule == "mean":
        want = sum(steps) / 3
    else:
        want = ((steps[0] / 2 + steps[1]) / 2 + steps[2]) / 2
    assert got == pytest.approx(want, rel=1e-5)


def test_update_per_step_changes_the_distribution_at_once():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=1.0, update="step", seed=0)
    sampler.set_epoch(0)
    path = [2, 2, 2, 2, 2, 2]
    backward(model, path, seed=0)
    sampler.record(path)
    assert sampler.probabilities[0, 2] == 1.0


def test_samples_follow_the_distribution():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.6, rule="ema", seed=5)
    sampler.scores = torch.tensor([[0.0, 0.0, 1.0, 3.0, 0.0]])
    sampler.visited = sampler.scores > 0
    sampler.set_epoch(1)
    want = 0.6 * torch.tensor([0, 0, 0.25, 0.75, 0], dtype=torch.float64) + 0.4 / 5
    torch.testing.assert_close(sampler.probabilities[0], want)
    counts = torch.zeros(5)
    for _ in range(3000):
        counts += torch.bincount(torch.tensor(sampler.sample()), minlength=5)
    assert stats.chisquare(counts.numpy(), (want * counts.sum()).numpy()).pvalue > 1e-4


def record_without_host_reads(monkeypatch, sampler, path):
    """sampler.record(path) with every way of reading a tensor on the host made
    to raise; then monkeypatch undoes its changes."""

    def forbidden(*args, **kwargs):
        raise AssertionError("record() read a tensor back to the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    sampler.record(path)
    monkeypatch.undo()


@pytest.mark.parametrize("update", ["epoch", "step"])
def test_record_does_not_sync_with_the_host(monkeypatch, update):
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.5, update=update, seed=0)
    path = [3, 2, 1, 3, 0, 4]
    backward(model, path, seed=0)
    sampler.record(path)  # warm the per-path plan
    record_without_host_reads(monkeypatch, sampler, path)
    assert torch.isfinite(sampler.scores).all()


def test_missing_gradients_count_as_zero():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.5, norm="paper", rule="paper", seed=0)
    path = [3, 3, 0, 0, 0, 0]
    backward(model, path, seed=0)
    model.cells[0].edges[0][3][1].bias.grad = None
    step = sampler.step_scores(path)
    conv = [c.edges[k][3][1] for c in model.cells for k in (0, 1)]
    want = (
        sum(
            c.weight.grad.norm() + (c.bias.grad.norm() if c.bias.grad is not None else 0)
            for c in conv
        )
        / 2
    )
    assert float(step[0, 3]) == pytest.approx(float(want), rel=1e-5)


def test_same_seed_same_paths_and_state_dict_resume():
    def run(sampler, model, epochs, start=0):
        paths = []
        for epoch in range(start, start + epochs):
            sampler.set_epoch(epoch)
            for step in range(3):
                path = sampler.sample()
                paths.append(path)
                backward(model, path, seed=10 * epoch + step)
                sampler.record(path)
        return paths

    def fresh_run(epochs):
        model = tiny_supernet()
        return run(PathSampler(model.decisions(), epochs=4, seed=8), model, epochs)

    full = fresh_run(4)
    assert full == fresh_run(4)
    model = tiny_supernet()
    first = PathSampler(model.decisions(), epochs=4, seed=8)
    head = run(first, model, 2)
    resumed = PathSampler(model.decisions(), epochs=4, seed=99)
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, model, 2, start=2) == full


def test_two_processes_on_gloo(tmp_path):
    mp.spawn(
        __import__("dist_workers").path_sampler_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["seed"] == r1["seed"] and r0["paths"] == r1["paths"]  # the same path per step
    assert not torch.equal(r0["local"], r1["local"])  # each rank saw its own data
    torch.testing.assert_close(r0["probs"], r1["probs"])  # merged before the update
    seen = (r0["local"] > 0) | (r1["local"] > 0)
    merged = torch.where(
        (r0["local"] > 0) & (r1["local"] > 0),
        (r0["local"] + r1["local"]) / 2,
        r0["local"] + r1["local"],
    )
    want = merged.double() / merged.double().sum()
    torch.testing.assert_close(r0["probs"][seen], want[seen], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rule": "max"}, "rule"),
        ({"norm": "l1"}, "norm"),
        ({"update": "batch"}, "update"),
        ({"delta": "linear"}, "epochs"),
        ({"decay": 0.5, "rule": "mean"}, "rule='ema'"),
    ],
)
def test_bad_configuration(kwargs, match):
    kwargs.setdefault("delta", 0.5)
    with pytest.raises(ValueError, match=match):
        PathSampler(tiny_supernet().decisions(), **kwargs)


def test_bad_edges_and_paths():
    with pytest.raises(TypeError, match=r"edges\[0\]"):
        PathSampler([torch.nn.Linear(2, 2)], delta=0.5)
    with pytest.raises(ValueError, match="same number of candidate ops"):
        PathSampler(
            [
                torch.nn.ModuleList([torch.nn.Identity()]),
                torch.nn.ModuleList([torch.nn.Identity()] * 2),
            ],
            delta=0.5,
        )
    sampler = PathSampler(tiny_supernet().decisions(), delta=0.5, seed=0)
    with pytest.raises(ValueError, match="6 ops"):
        sampler.record([1, 2])
    with pytest.raises(ValueError, match=r"path\[1\] = 5"):
        sampler.record([1, 5, 0, 0, 0, 0])
    other = PathSampler(tiny_supernet().decisions(), delta=0.5, shared=False, seed=0)
    with pytest.raises(ValueError, match="configured"):
        other.load_state_dict(sampler.state_dict())


@pytest.mark.parametrize("norm,rule", [("l2", "ema"), ("paper", "paper")])
def test_flat_grads_gives_the_same_scores_and_trains_the_same(norm, rule):
    models = [tiny_supernet(), tiny_supernet()]
    optims = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    samplers = [
        PathSampler(
            m.decisions(), delta=0.5, norm=norm, rule=rule, seed=4, flat_grads=flat, optimizer=o
        )
        for m, o, flat in zip(models, optims, (False, True))
    ]
    for s in samplers:
        s.set_epoch(0)
    for step in range(4):
        path = samplers[0].sample()
        assert samplers[1].sample() == path
        for m, s, opt, flat in zip(models, samplers, optims, (False, True)):
            backward(m, path, seed=step, set_to_none=not flat)  # flat: keeps the views
            opt.step()
            s.record(path)
        torch.testing.assert_close(samplers[1].scores, samplers[0].scores, rtol=1e-5, atol=1e-7)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)
    # The views really are the gradients: the buffer holds them.
    cell_conv = models[1].cells[0].edges[0][3][1].weight
    assert (
        cell_conv.grad.untyped_storage().data_ptr()
        == samplers[1]._flat.flat.untyped_storage().data_ptr()
    )


def test_flat_grads_notices_replaced_gradients():
    model, ref = tiny_supernet(), tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = PathSampler(
        model.decisions(), delta=0.5, rule="mean", seed=0, flat_grads=True, optimizer=opt
    )
    plain = PathSampler(ref.decisions(), delta=0.5, rule="mean", seed=0)
    path = [3, 2, 3, 2, 3, 2]
    model.zero_grad(set_to_none=True)  # drops the views
    backward(model, path, seed=1)
    backward(ref, path, seed=1)
    with pytest.warns(RuntimeWarning, match="replaced"):
        sampler.record(path)
    plain.record(path)
    torch.testing.assert_close(sampler.scores, plain.scores)  # still right, without the buffer
    assert sampler._flat is None


def test_flat_grads_needs_one_dtype():
    model = tiny_supernet()
    model.cells[0].edges[0][2].double()
    with pytest.raises(ValueError, match="one dtype"):
        PathSampler(model.decisions(), delta=0.5, flat_grads=True, optimizer=[])
    with pytest.raises(ValueError, match="needs optimizer"):
        PathSampler(tiny_supernet().decisions(), delta=0.5, flat_grads=True)


# -- devices: the per-step path without host syncs, CPU and CUDA alike ------------------


@contextlib.contextmanager
def exact_cuda_math():
    """Convolutions in float32 (no TF32) so that CUDA gradients match the CPU's closely."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(update="epoch"),
        dict(update="step"),
        dict(update="step", lag=1, flat_grads=True),
        dict(update="step", shared=False, norm="paper", rule="paper"),
        dict(rule="mean", flat_grads=True),
    ],
    ids=["epoch", "step", "step-lag1-flat", "step-per-edge-paper", "mean-flat"],
)
def test_training_steps_do_not_sync(device, kwargs):
    """sample, forward, backward, SGD step and record under torch's sync debug mode
    "error" on CUDA (any host sync raises), new paths (cold plans) included."""
    model = tiny_supernet().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sampler = PathSampler(model.decisions(), epochs=3, seed=1, optimizer=opt, **kwargs)
    flat = kwargs.get("flat_grads", False)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(6, 3, 8, 8, generator=g).to(device),
            torch.randint(3, (6,), generator=g).to(device),
        )
        for _ in range(4)
    ]

    def step(x, y, path):
        opt.zero_grad(set_to_none=not flat)
        torch.nn.functional.cross_entropy(model(x, path), y).backward()
        opt.step()
        sampler.record(path)

    step(*batches[0], [0, 1, 2, 3, 4, 3])  # lazy CUDA/cuDNN set-up of every op, unchecked
    for epoch in range(3):
        sampler.set_epoch(epoch)  # the documented once-per-epoch read-back
        with no_sync(device):
            for x, y in batches:
                step(x, y, sampler.sample())
    assert torch.isfinite(sampler.scores).all() and sampler.scores.device.type == device
    assert sampler.scores.max() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_lag_draws_from_the_distribution_one_record_back(device):
    model = tiny_supernet().to(device)
    exact = PathSampler(model.decisions(), delta=1.0, update="step", seed=0)
    lagged = PathSampler(model.decisions(), delta=1.0, update="step", lag=1, seed=0)
    for s in (exact, lagged):
        s.set_epoch(0)
    uniform = torch.full((1, 5), 0.2, dtype=torch.float64)
    history = [uniform]
    for k, path in enumerate(([2] * 6, [3] * 6, [2, 3, 2, 3, 2, 3])):
        backward(model, path, seed=k)
        exact.record(path)
        lagged.record(path)
        history.append(exact.probabilities.clone())
        torch.testing.assert_close(lagged.probabilities, history[-2])
    assert history[1][0, 2] == 1.0 and not torch.equal(history[2], history[1])
    # a checkpoint keeps the distribution still waiting to be used
    resumed = PathSampler(model.decisions(), delta=1.0, update="step", lag=1, seed=5)
    resumed.load_state_dict(lagged.state_dict())
    assert torch.equal(resumed.probabilities, lagged.probabilities)
    backward(model, [4] * 6, seed=9)
    resumed.record([4] * 6)
    torch.testing.assert_close(resumed.probabilities, history[-1])
    with pytest.raises(ValueError, match="lag"):
        PathSampler(model.decisions(), delta=1.0, lag=1)
    with pytest.raises(ValueError, match="lag"):
        PathSampler(model.decisions(), delta=1.0, update="step", lag=-1)


@requires_cuda
@pytest.mark.parametrize(
    "kwargs",
    [dict(update="epoch"), dict(update="step"), dict(norm="paper", rule="paper", update="step")],
    ids=["epoch", "step", "paper-step"],
)
def test_cuda_run_matches_the_cpu_run_and_resumes_on_cuda(kwargs):
    """The same supernet on CPU and CUDA, fed the same paths and batches: the same
    scores and distributions (to float32 rounding); a state_dict moves between them
    and then both draw the same paths."""
    with exact_cuda_math():
        models = {d: tiny_supernet().to(d) for d in ("cpu", "cuda")}
        samplers = {
            d: PathSampler(models[d].decisions(), epochs=4, seed=7, **kwargs) for d in models
        }
        for epoch in range(3):
            for s in samplers.values():
                s.set_epoch(epoch)
            for step in range(4):
                path = samplers["cpu"].sample()
                on_cuda = samplers["cuda"].sample()  # keeps the generators in step
                if epoch == 0 and kwargs["update"] == "epoch":
                    assert on_cuda == path  # uniform on both: the very same draw
                for d, m in models.items():
                    backward(m, path, seed=10 * epoch + step)
                    samplers[d].record(path)
                torch.testing.assert_close(
                    samplers["cuda"].scores.cpu(), samplers["cpu"].scores, rtol=1e-4, atol=1e-6
                )
                torch.testing.assert_close(
                    samplers["cuda"].probabilities,
                    samplers["cpu"].probabilities,
                    rtol=1e-4,
                    atol=1e-7,
                )
        assert (
            samplers["cuda"].scores.is_cuda and samplers["cuda"].probabilities.device.type == "cpu"
        )
        # resume on CUDA from the CPU run's checkpoint (and back): identical draws
        resumed = PathSampler(models["cuda"].decisions(), epochs=4, seed=0, **kwargs)
        resumed.load_state_dict(samplers["cpu"].state_dict())
        assert resumed.scores.is_cuda
        back = PathSampler(models["cpu"].decisions(), epochs=4, seed=0, **kwargs)
        back.load_state_dict(resumed.state_dict())
        for s in (samplers["cpu"], resumed, back):
            s.set_epoch(3)
        for _ in range(4):  # the same distribution and generator state: the same draws
            path = samplers["cpu"].sample()
            assert resumed.sample() == path and back.sample() == path


# -- flat_grads: casts, frozen and shared parameters, what the optimizer sees --------


def candidate_params(model):
    return [
        p for cell in model.cells for edge in cell.edges for op in edge for p in op.parameters()
    ]


def fill_grads(model, seed):
    """Writes deterministic gradients in place (as a backward into kept .grad tensors)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.grad is not None:
            p.grad.copy_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("cast", ["half", "bfloat16", "float64"])
def test_flat_grads_follows_casts(cast):
    """Module._apply swaps the storage behind each .grad: the buffer must follow."""
    model, ref = tiny_supernet(), tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    flat = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=True, optimizer=opt)
    plain = PathSampler(ref.decisions(), delta=0.5, seed=0)
    path = [3, 2, 3, 0, 2, 4]
    backward(model, path, seed=0, set_to_none=False)
    flat.record(path)
    dtype = {"half": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}[cast]
    model.to(dtype)
    ref.to(dtype)
    for p, q in zip(model.parameters(), ref.parameters()):
        q.grad = torch.zeros_like(q) if p.grad is not None else None
    with warnings_as_errors():
        for seed in (1, 2):
            model.zero_grad(set_to_none=False)
            fill_grads(model, seed)
            fill_grads(ref, seed)
            got, want = flat.step_scores(path), plain.step_scores(path)
            assert got[0, 2] > 0 and got[0, 3] > 0
            torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    # the buffer now has the new dtype and really holds the gradients
    assert flat._flat.flat.dtype == dtype
    conv = model.cells[0].edges[0][3][1].weight
    assert conv.grad.untyped_storage().data_ptr() == flat._flat.flat.untyped_storage().data_ptr()


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_list_mode_follows_a_cast_to_float64():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, norm="l2")
    path = [3, 2, 3, 0, 2, 4]
    backward(model, path, seed=0)
    model.double()  # casts the gradients too
    got = sampler.step_scores(path)[0]
    for op in (2, 3):
        uses = [k for k, j in enumerate(path) if j == op]
        sq = sum(
            p.grad.square().sum()
            for k in uses
            for c in model.cells
            for p in c.edges[k][op].parameters()
        )
        assert float(got[op]) == pytest.approx(float((sq / len(uses)).sqrt()), rel=1e-6)


def test_flat_grads_leaves_frozen_parameters_alone():
    model = tiny_supernet()
    frozen = model.cells[0].edges[0][3][1].bias
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=True, optimizer=opt)
    assert frozen.grad is None
    for step in range(3):
        backward(model, [3] * 6, seed=step, set_to_none=False)
        opt.step()
        sampler.record([3] * 6)
    assert frozen.grad is None and torch.equal(frozen, before)
    assert sampler._flat.flat.numel() == sum(
        p.numel() for p in candidate_params(model) if p.requires_grad
    )


def test_flat_grads_with_parameters_shared_between_ops():
    """A weight of op 2 on edge 1 is op 2's weight on edge 0 too: each op's score
    counts it (as without the buffer) and the buffer holds it once."""

    def shared_model():
        model = tiny_supernet()
        for cell in model.cells:
            cell.edges[1][2][1].weight = cell.edges[0][2][1].weight
        return model

    model, ref = shared_model(), shared_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    flat = PathSampler(
        model.decisions(), delta=0.5, seed=0, shared=False, flat_grads=True, optimizer=opt
    )
    plain = PathSampler(ref.decisions(), delta=0.5, seed=0, shared=False)
    unique = {id(p): p for p in candidate_params(model)}.values()
    assert flat._flat.flat.numel() == sum(p.numel() for p in unique)
    for path in ([2, 2, 3, 0, 1, 4], [2, 0, 3, 3, 1, 4], [0, 2, 2, 2, 2, 2]):
        backward(model, path, seed=1, set_to_none=False)
        backward(ref, path, seed=1)
        torch.testing.assert_close(flat.step_scores(path), plain.step_scores(path))
    assert flat.step_scores([0, 2, 2, 2, 2, 2])[1, 2] > 0


def run_steps(make_opt, flat, paths):
    model = tiny_supernet()
    opt = make_opt(model.parameters())
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=flat, optimizer=opt)
    snapshots = []
    for step, path in enumerate(paths):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(3, (6,), generator=g)
        opt.zero_grad(set_to_none=not flat)  # the views need in-place zeroing
        torch.nn.functional.cross_entropy(model(x, path), y).backward()
        opt.step()
        sampler.record(path)
        snapshots.append([p.detach().clone() for p in model.parameters()])
    return model, snapshots


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "adamw"],
)
def test_flat_grads_moves_exactly_what_the_optimizer_moves_without_it(make_opt):
    """Op 3 of edge 0 is trained at step 0 only, op 2 of edge 5 never, step 2 has
    no op with parameters: with or without the buffer every step moves the same
    parameters by the same amounts (bit for bit)."""
    paths = [[3, 2, 3, 2, 3, 0], [2, 3, 2, 3, 2, 1], [0, 1, 4, 0, 1, 4], [2, 2, 2, 3, 3, 3]]
    plain_model, plain = run_steps(make_opt, False, paths)
    flat_model, flat = run_steps(make_opt, True, paths)
    for step, (a, b) in enumerate(zip(plain, flat)):
        for i, (p, q) in enumerate(zip(a, b)):
            assert torch.equal(p, q), f"step {step}: parameter {i} differs"
    never = flat_model.cells[0].edges[5][2][1].weight
    assert torch.equal(never, tiny_supernet().cells[0].edges[5][2][1].weight)


def test_flat_grads_optimizer_lists_are_restored_after_each_step():
    model = tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    full = list(opt.param_groups[0]["params"])
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=True, optimizer=opt)
    backward(model, [3] * 6, seed=0, set_to_none=False)
    opt.step()
    assert opt.param_groups[0]["params"] == full
    sampler.record([3] * 6)
    assert len(opt.state_dict()["param_groups"][0]["params"]) == len(full)


def test_flat_grads_fallback_frees_the_buffer():
    import gc
    import weakref

    model = tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, flat_grads=True, optimizer=opt)
    path = [3, 2, 3, 2, 3, 2]
    backward(model, path, seed=0, set_to_none=False)
    sampler.record(path)  # a plan holding block views
    buffer = weakref.ref(sampler._flat.flat)
    backward(model, path, seed=1, set_to_none=True)
    with pytest.warns(RuntimeWarning, match="replaced"):
        sampler.record(path)
    gc.collect()
    assert buffer() is None


# -- mixed precision ------------------------------------------------------------------


def scaled_backward(model, path, seed, scaler, opt, set_to_none=True):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(3, (6,), generator=g)
    opt.zero_grad(set_to_none=set_to_none)
    loss = torch.nn.functional.cross_entropy(model(x, path), y)
    (loss if scaler is None else scaler.scale(loss)).backward()


@pytest.mark.parametrize("when", ["after-backward", "after-unscale", "after-step", "after-update"])
def test_amp_scores_are_those_of_the_unscaled_gradients(when):
    model, ref = tiny_supernet(), tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: both models stay equal
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=1)
    amp = PathSampler(model.decisions(), delta=0.5, seed=0, scaler=scaler, optimizer=opt)
    plain = PathSampler(ref.decisions(), delta=0.5, seed=0)
    for step, path in enumerate(([3, 2, 3, 0, 2, 4], [2, 2, 3, 3, 1, 1], [3] * 6)):
        scaled_backward(model, path, step, scaler, opt)
        scaled_backward(ref, path, step, None, ref_opt)
        stages = ["after-backward", "after-unscale", "after-step", "after-update"]
        for stage in stages:
            if stage == when:
                amp.record(path)
            if stage == "after-backward":
                scaler.unscale_(opt)
            elif stage == "after-unscale":
                scaler.step(opt)
            elif stage == "after-step":
                scaler.update()  # the scale grows every step here
        plain.record(path)
        torch.testing.assert_close(amp.scores, plain.scores, rtol=1e-5, atol=1e-7)
    assert scaler.get_scale() > 2.0**16 and amp.skipped_scores == 0


def test_amp_overflow_steps_are_skipped_and_counted():
    model = tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    sampler = PathSampler(model.decisions(), delta=0.5, seed=0, scaler=scaler, optimizer=opt)
    path = [3, 2, 3, 0, 2, 4]
    scaled_backward(model, path, 0, scaler, opt)
    sampler.record(path)
    scaler.step(opt)
    scaler.update()
    before = sampler.scores.clone()
    scaled_backward(model, path, 1, scaler, opt)
    model.cells[0].edges[0][3][1].weight.grad[0, 0, 0, 0] = float("inf")
    sampler.record(path)  # op 3's step score is inf: left out
    scaler.step(opt)  # skipped by the scaler
    scaler.update()
    assert sampler.skipped_scores == 1 and torch.equal(sampler.scores[0, 3], before[0, 3])
    assert torch.isfinite(sampler.scores).all() and scaler.get_scale() < 2.0**16
    assert PathSampler(model.decisions(), delta=0.5).skipped_scores == 0
    resumed = PathSampler(model.decisions(), delta=0.5, seed=0)
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.skipped_scores == 1


def test_amp_with_flat_grads_moves_what_it_moves_without_the_buffer():
    """A step that the scaler skips spends its gradients: the next step must not
    see the zero gradients of the skipped step's ops."""
    paths = [[3, 3, 3, 3, 3, 3], [2, 2, 2, 2, 2, 2], [0, 1, 4, 0, 1, 4]]
    results = []
    for flat in (False, True):
        model = tiny_supernet()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        sampler = PathSampler(
            model.decisions(), delta=0.5, seed=0, scaler=scaler, optimizer=opt, flat_grads=flat
        )
        for step, path in enumerate(paths):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(3, (6,), generator=g)
            opt.zero_grad(set_to_none=not flat)
            scaler.scale(torch.nn.functional.cross_entropy(model(x, path), y)).backward()
            if step == 1:  # an overflow: the scaler skips this step
                model.cells[0].edges[0][2][1].weight.grad.fill_(float("inf"))
            scaler.step(opt)
            scaler.update()
            sampler.record(path)
        results.append([p.detach().clone() for p in model.parameters()])
    for i, (p, q) in enumerate(zip(*results)):
        assert torch.equal(p, q), f"parameter {i} differs"


def test_scaler_must_be_a_grad_scaler():
    with pytest.raises(TypeError, match="GradScaler"):
        PathSampler(tiny_supernet().decisions(), delta=0.5, scaler=object())
    with pytest.raises(TypeError, match=r"optimizer\[0\]"):
        PathSampler(tiny_supernet().decisions(), delta=0.5, optimizer=[object()])


# -- epochs, paths and decisions ------------------------------------------------------


def test_set_epoch_out_of_range_raises():
    sampler = PathSampler(tiny_supernet().decisions(), epochs=4, seed=0)
    sampler.set_epoch(3)
    assert sampler.delta == 0.75
    for bad in (4, 5, -1):
        with pytest.raises(ValueError, match=rf"epoch {bad} is out of range.*0 \.\. 3"):
            sampler.set_epoch(bad)
    for bad in (1.0, True, "1"):
        with pytest.raises(TypeError, match="epoch must be an int"):
            sampler.set_epoch(bad)
    assert sampler.epoch == 3
    with pytest.raises(ValueError, match="out of range"):
        PathSampler(tiny_supernet().decisions(), delta=0.5).set_epoch(-1)
    with pytest.raises(ValueError, match="epochs must be"):
        PathSampler(tiny_supernet().decisions(), delta=0.5, epochs=0)


def test_state_dict_is_a_snapshot():
    # A state dict taken earlier must not follow later in-place updates of the tables.
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), epochs=3, seed=0)
    sampler.set_epoch(0)
    path = sampler.sample()
    model.zero_grad()
    model(torch.randn(2, 3, 8, 8), path).square().mean().backward()
    sampler.record(path)
    state = sampler.state_dict()
    before = {k: state[k].clone() for k in ("scores", "visited", "count")}
    # What the distributed merge does to the live tables: in place.
    for k in before:
        getattr(sampler, k).fill_(7)
    for k, v in before.items():
        assert torch.equal(state[k], v), k
    other = PathSampler(model.decisions(), epochs=3, seed=0)
    other.load_state_dict(state)
    for k in before:
        getattr(other, k).fill_(7)
    for k, v in before.items():
        assert torch.equal(state[k], v), f"load_state_dict shares {k}"


def test_sampling_without_set_epoch_warns_once():
    sampler = PathSampler(tiny_supernet().decisions(), epochs=4, seed=0)
    with pytest.warns(RuntimeWarning, match="set_epoch"):
        sampler.sample()
    with warnings_as_errors():
        sampler.sample()
        other = PathSampler(tiny_supernet().decisions(), epochs=4, seed=0)
        other.set_epoch(0)
        other.sample()


def test_bad_path_entries():
    sampler = PathSampler(tiny_supernet().decisions(), delta=0.5, seed=0)
    for bad in (0.9, 2.0, True, "1", torch.tensor(1.0)):
        with pytest.raises(TypeError, match=r"path\[2\] = .* is not an op index"):
            sampler.record([0, 1, bad, 0, 0, 0])
    with pytest.raises(ValueError, match=r"path\[3\] = -1 is not an op index of decision 3"):
        sampler.record([0, 1, 2, -1, 0, 0])
    with pytest.raises(ValueError, match=r"6 ops \(one per decision\), got 7"):
        sampler.record([0] * 7)
    import numpy as np

    backward(tiny_supernet(), [3] * 6, seed=0)
    sampler.record(np.array([3] * 6))  # numpy and tensor ints are fine
    sampler.record(torch.tensor([3] * 6))


def test_decisions_from_module_names():
    model = tiny_supernet()
    built = PathSampler.decisions_from(model, r"layers\.\d+\.edges\.(\d+)")
    want = model.decisions()
    assert [[id(m) for m in d] for d in built] == [[id(m) for m in d] for d in want]
    # without a group: every match is a decision of its own
    single = PathSampler.decisions_from(model, r"layers\.0\.edges\.\d+")
    assert [len(d) for d in single] == [1] * 6
    with pytest.raises(TypeError, match="not an nn.ModuleList"):
        PathSampler.decisions_from(model, r"layers\.0\.edges\.0\.3")
    with pytest.raises(ValueError, match="matches no module"):
        PathSampler.decisions_from(model, r"cells\.(\d+)")
    a = PathSampler(built, delta=0.5, seed=3)
    b = PathSampler(want, delta=0.5, seed=3)
    path = [3, 2, 3, 2, 0, 1]
    backward(model, path, seed=0)
    torch.testing.assert_close(a.step_scores(path), b.step_scores(path))


def test_transposed_decisions_are_rejected():
    """Edges with different candidates: a list per cell instead of per edge is caught."""
    from torch import nn

    def edge(first):
        ops = [nn.Conv2d(2, 2, 1), nn.Identity()]
        return nn.ModuleList(ops if first else ops[::-1])

    cells = [nn.ModuleList([edge(True), edge(False)]) for _ in range(2)]  # 2 cells, 2 edges
    good = [[cell[k] for cell in cells] for k in range(2)]
    PathSampler(good, delta=0.5)
    transposed = [[cell[k] for k in range(2)] for cell in cells]
    with pytest.raises(ValueError, match=r"edges\[0\]\[1\]: op 0 is a Identity .*transposed"):
        PathSampler(transposed, delta=0.5)
    with pytest.raises(ValueError, match=r"edges\[1\]\[0\] is the candidate list already"):
        PathSampler([good[0], good[0]], delta=0.5)


@pytest.mark.parametrize("stage", ["scaled", "unscaled"])
def test_amp_record_does_not_sync_with_the_host(monkeypatch, stage):
    model = tiny_supernet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    sampler = PathSampler(
        model.decisions(), delta=0.5, seed=0, scaler=scaler, optimizer=opt, flat_grads=True
    )
    path = [3, 2, 1, 3, 0, 4]
    scaled_backward(model, path, 0, scaler, opt, set_to_none=False)
    sampler.record(path)  # warm the plan
    scaled_backward(model, path, 1, scaler, opt, set_to_none=False)
    if stage == "unscaled":
        scaler.unscale_(opt)
    record_without_host_reads(monkeypatch, sampler, path)
    assert torch.isfinite(sampler.scores).all() and sampler.scores.max() < 100


@requires_cuda
@pytest.mark.parametrize("flat", [False, True], ids=["list", "flat"])
def test_cuda_sampler_follows_the_model_to_cuda(flat):
    """Built on the CPU, the supernet then moved: the scores move too (and the
    flat buffer is rebuilt on the GPU), matching a sampler built on the GPU."""
    with exact_cuda_math():
        model, ref = tiny_supernet(), tiny_supernet().cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        moved = PathSampler(
            model.decisions(), delta=0.5, seed=0, flat_grads=flat, optimizer=opt, rule="mean"
        )
        plain = PathSampler(ref.decisions(), delta=0.5, seed=0, rule="mean")
        path = [3, 2, 3, 0, 2, 4]
        backward(model, [3] * 6, seed=5, set_to_none=not flat)  # CPU gradients first
        model.cuda()
        for step in range(3):
            backward(model, path, seed=step, set_to_none=not flat)
            backward(ref, path, seed=step)
            moved.record(path)
            plain.record(path)
        assert moved.scores.is_cuda and moved.visited.is_cuda
        torch.testing.assert_close(moved.scores, plain.scores, rtol=1e-5, atol=1e-7)
        if flat:
            conv = model.cells[0].edges[0][3][1].weight
            assert moved._flat.flat.is_cuda
            assert conv.grad.data_ptr() >= moved._flat.flat.data_ptr()
            assert conv.grad.untyped_storage().data_ptr() == (
                moved._flat.flat.untyped_storage().data_ptr()
            )


@requires_cuda
def test_cuda_amp_record_reads_the_scale_on_the_device():
    with exact_cuda_math():
        model = tiny_supernet().cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12)
        sampler = PathSampler(model.decisions(), delta=0.5, seed=0, scaler=scaler, optimizer=opt)
        path = [3, 2, 3, 0, 2, 4]

        def scaled_step(seed):
            g = torch.Generator().manual_seed(seed)
            x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(3, (6,), generator=g)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x.cuda(), path), y.cuda())
            scaler.scale(loss).backward()

        scaled_step(0)
        sampler.record(path)  # warm: plan, lazy CUDA set-up
        scaler.step(opt)
        scaler.update()
        scaled_step(1)
        with no_sync("cuda"):
            scaled = sampler.step_scores(path)  # before unscale_: divided on the device
            sampler.record(path)
        scaler.unscale_(opt)
        with no_sync("cuda"):
            unscaled = sampler.step_scores(path)
        torch.testing.assert_close(scaled, unscaled, rtol=1e-5, atol=1e-7)
        assert unscaled.is_cuda and float(unscaled.max()) < 100


# -- record() on sequences of distinct paths, against a plain restatement ---------


def synthetic_decisions(seed=0):
    """5 decisions of 2 instances of 4 ops: no parameters, one Linear, one
    Linear without bias, two Linears (4^5 = 1,024 paths)."""
    torch.manual_seed(seed)

    def ops():
        return torch.nn.ModuleList(
            [
                torch.nn.Identity(),
                torch.nn.Linear(3, 3),
                torch.nn.Linear(3, 2, bias=False),
                torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)),
            ]
        )

    return [[ops() for _ in range(2)] for _ in range(5)]


def distinct_paths(n, seed=0):
    order = torch.randperm(4**5, generator=torch.Generator().manual_seed(seed))[:n]
    return [[int(c) // 4**k % 4 for k in range(5)] for c in order]


def fill_step_grads(decisions, step):
    """Seeded gradients for every parameter; some missing, one step inf, one NaN."""
    g = torch.Generator().manual_seed(1000 + step)
    for k, insts in enumerate(decisions):
        for i, inst in enumerate(insts):
            for j, op in enumerate(inst):
                for p in op.parameters():
                    p.grad = torch.randn(p.shape, generator=g) * (1 + j + step % 3)
                    if step % 7 == 3 and (k + i + j) % 5 == 0:
                        p.grad = None
    bad = {13: float("inf"), 29: float("nan")}.get(step)
    if bad is not None:
        decisions[step % 5][0][1].weight.grad[0, 0] = bad


def reference_record(state, decisions, path, decay, shared, norm, rule):
    """One record restated: per op on the path, its step score from every
    gradient tensor of its instances; then the rule, in float64."""
    k_ops = 4
    uses = [path.count(j) for j in range(k_ops)]
    rows = 1 if shared else len(decisions)
    step = [[0.0] * k_ops for _ in range(rows)]
    on = [[False] * k_ops for _ in range(rows)]
    for k, j in enumerate(path):
        params = list({id(p): p for inst in decisions[k] for p in inst[j].parameters()}.values())
        r = 0 if shared else k
        if params:
            on[r][j] = True
        for p in params:
            if p.grad is not None:
                n = torch.linalg.vector_norm(p.grad.double()).item()
                step[r][j] += n * n if norm == "l2" else n
    # norm="paper" sums the norms with one matrix product: a non-finite norm
    # (0 * inf = NaN) makes every step score NaN, so every op on the path skips.
    poisoned = norm == "paper" and any(x != x or x == float("inf") for row in step for x in row)
    for r in range(rows):
        for j in range(k_ops):
            u = uses[j] if shared else 1
            if poisoned:
                step[r][j] = float("nan")
            if norm == "l2":
                step[r][j] = (step[r][j] / max(u, 1)) ** 0.5
            else:
                step[r][j] /= max(u, 1)
            x, s = step[r][j], state["scores"][r][j]
            finite = x == x and x != float("inf")
            if on[r][j] and not finite:
                state["skipped"] += 1
            if rule == "paper":
                if finite and x > 0:
                    state["scores"][r][j] = (s + x) / 2
                    state["seen"][r][j] = True
            elif on[r][j] and finite:
                if rule == "ema":
                    state["scores"][r][j] = (
                        decay * s + (1 - decay) * x if state["seen"][r][j] else x
                    )
                else:
                    state["count"][r][j] += 1
                    state["scores"][r][j] = s + (x - s) / state["count"][r][j]
                state["seen"][r][j] = True


RECORD_CONFIGS = [
    dict(shared=True, norm="paper", rule="paper"),
    dict(shared=True, norm="l2", rule="ema"),
    dict(shared=False, norm="l2", rule="mean"),
    dict(shared=False, norm="paper", rule="ema"),
    dict(shared=True, norm="l2", rule="paper"),
    dict(shared=True, norm="paper", rule="mean"),
]


def run_distinct_paths(config, before_record=None, steps=300):
    """A sampler after `steps` records of distinct paths with fill_step_grads's
    gradients; before_record(decisions, path) sees each step first."""
    decisions = synthetic_decisions()
    sampler = PathSampler(decisions, delta=0.5, seed=0, **config)
    for t, path in enumerate(distinct_paths(steps)):
        fill_step_grads(decisions, t)
        if before_record is not None:
            before_record(decisions, path)
        sampler.record(path)
    return sampler


@pytest.mark.parametrize("config", RECORD_CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_record_on_distinct_uniform_paths_matches_a_plain_restatement(config):
    rows = 1 if config["shared"] else 5
    state = {
        "scores": [[0.0] * 4 for _ in range(rows)],
        "seen": [[False] * 4 for _ in range(rows)],
        "count": [[0] * 4 for _ in range(rows)],
        "skipped": 0,
    }
    sampler = run_distinct_paths(
        config, lambda decisions, path: reference_record(state, decisions, path, 0.9, **config)
    )
    torch.testing.assert_close(
        sampler.scores, torch.tensor(state["scores"], dtype=torch.float32), rtol=1e-5, atol=0
    )
    assert sampler.visited.tolist() == state["seen"]
    assert sampler.skipped_scores == state["skipped"] > 0


# Scores after 300 distinct paths, from the implementation before list-mode
# plans were keyed per op (per-path plans): the rewrite is pinned to them
# (float.hex; equal here bit for bit, a tolerance for other BLAS builds).
PINNED = [
    (
        {"shared": True, "norm": "paper", "rule": "paper"},
        ["0x0.0p+0", "0x1.9efad80000000p+4", "0x1.deb5000000000p+3", "0x1.8e77dc0000000p+5"],
        3,
    ),
    (
        {"shared": True, "norm": "l2", "rule": "ema"},
        ["0x0.0p+0", "0x1.b04fdc0000000p+3", "0x1.9371840000000p+3", "0x1.49e75e0000000p+4"],
        1,
    ),
    (
        {"shared": False, "norm": "l2", "rule": "mean"},
        [
            "0x0.0p+0",
            "0x1.d71b000000000p+3",
            "0x1.ad06100000000p+3",
            "0x1.54138c0000000p+4",
            "0x0.0p+0",
            "0x1.c1de680000000p+3",
            "0x1.bb2ec40000000p+3",
            "0x1.4e0fe60000000p+4",
            "0x0.0p+0",
            "0x1.df38e80000000p+3",
            "0x1.8d7c7e0000000p+3",
            "0x1.3c0d4c0000000p+4",
            "0x0.0p+0",
            "0x1.b0cd1e0000000p+3",
            "0x1.9a7d980000000p+3",
            "0x1.5085dc0000000p+4",
            "0x0.0p+0",
            "0x1.cca0c00000000p+3",
            "0x1.a7675a0000000p+3",
            "0x1.4d19f40000000p+4",
        ],
        1,
    ),
    (
        {"shared": False, "norm": "paper", "rule": "ema"},
        [
            "0x0.0p+0",
            "0x1.a36eca0000000p+4",
            "0x1.4d6df00000000p+4",
            "0x1.95224c0000000p+5",
            "0x0.0p+0",
            "0x1.9f2b8c0000000p+4",
            "0x1.30299a0000000p+4",
            "0x1.ae63d40000000p+5",
            "0x0.0p+0",
            "0x1.ab3e860000000p+4",
            "0x1.01c2cc0000000p+4",
            "0x1.700f660000000p+5",
            "0x0.0p+0",
            "0x1.8017260000000p+4",
            "0x1.e3930e0000000p+3",
            "0x1.c5c54e0000000p+5",
            "0x0.0p+0",
            "0x1.8d8b2c0000000p+4",
            "0x1.3333de0000000p+4",
            "0x1.9306840000000p+5",
        ],
        4,
    ),
    (
        {"shared": True, "norm": "l2", "rule": "paper"},
        ["0x0.0p+0", "0x1.c3d7580000000p+3", "0x1.6bc88c0000000p+3", "0x1.45b7440000000p+4"],
        1,
    ),
    (
        {"shared": True, "norm": "paper", "rule": "mean"},
        ["0x0.0p+0", "0x1.a3f2f80000000p+4", "0x1.1fbd4c0000000p+4", "0x1.9a46060000000p+5"],
        3,
    ),
]


@pytest.mark.parametrize(
    "config,scores,skipped", PINNED, ids=["-".join(map(str, c.values())) for c, _, _ in PINNED]
)
def test_record_on_distinct_paths_gives_the_scores_of_before(config, scores, skipped):
    sampler = run_distinct_paths(config)
    want = torch.tensor([float.fromhex(x) for x in scores]).view_as(sampler.scores)
    torch.testing.assert_close(sampler.scores, want, rtol=1e-6, atol=0)
    assert sampler.skipped_scores == skipped


def test_state_dicts_saved_with_the_old_seen_key_still_load():
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), epochs=2, seed=1)
    sampler.set_epoch(0)
    path = sampler.sample()
    backward(model, path, seed=0)
    sampler.record(path)
    state = sampler.state_dict()
    state["seen"] = state.pop("visited")  # as saved before "visited" named it
    resumed = PathSampler(model.decisions(), epochs=2, seed=2)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.visited, sampler.visited) and resumed.visited.any()
