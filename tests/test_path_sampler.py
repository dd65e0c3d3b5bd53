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
    sampler.seen = sampler.scores > 0
    sampler.set_epoch(1)
    want = 0.6 * torch.tensor([0, 0, 0.25, 0.75, 0], dtype=torch.float64) + 0.4 / 5
    torch.testing.assert_close(sampler.probabilities[0], want)
    counts = torch.zeros(5)
    for _ in range(3000):
        counts += torch.bincount(torch.tensor(sampler.sample()), minlength=5)
    assert stats.chisquare(counts.numpy(), (want * counts.sum()).numpy()).pvalue > 1e-4


@pytest.mark.parametrize("update", ["epoch", "step"])
def test_record_does_not_sync_with_the_host(monkeypatch, update):
    model = tiny_supernet()
    sampler = PathSampler(model.decisions(), delta=0.5, update=update, seed=0)
    path = [3, 2, 1, 3, 0, 4]
    backward(model, path, seed=0)
    sampler.record(path)  # warm the per-path plan

    def forbidden(*args, **kwargs):
        raise AssertionError("record() read a tensor back to the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    sampler.record(path)
    monkeypatch.undo()
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
        __import__("dist_path_worker").path_sampler_worker,
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
