"""pada_ext.ImportanceSampler: distributions, rules, schedules, checkpoints,
DataLoader workers, distributed use and the authors' configuration."""

import warnings

import pytest
import torch
import torch.multiprocessing as mp
from conftest import BACKEND_DEVICES, DEVICES, importance_update_args, no_sync, requires_cuda
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from pada_ext import ImportanceSampler, IndexedDataset, ops
from pada_ext.schedules import make_schedule

P_MIN = 1e-4


def counts_p_value(draw, q):
    counts = torch.bincount(draw, minlength=q.numel()).double()
    nz = q > 0
    assert counts[~nz].sum() == 0, "an index of probability zero was drawn"
    expected = q[nz] / q[nz].sum() * draw.numel()
    return stats.chisquare(counts[nz].numpy(), expected.numpy()).pvalue


def test_first_epoch_is_uniform():
    s = ImportanceSampler(500, num_samples=200_000, epochs=10, seed=0)
    s.set_epoch(0)
    draw = torch.tensor(list(s))
    assert len(draw) == len(s) == 200_000
    assert counts_p_value(draw, torch.full((500,), 1 / 500, dtype=torch.float64)) > P_MIN


def test_draw_follows_scores_mixed_with_uniform():
    n = 300
    s = ImportanceSampler(n, num_samples=300_000, tau=0.7, rule="last", seed=1)
    s.set_epoch(0)
    scores = torch.rand(n, generator=torch.Generator().manual_seed(0))
    scores[::7] = 0.0
    s.update(torch.arange(n), scores)
    s.set_epoch(1)
    q = 0.7 * scores.double() / scores.double().sum() + 0.3 / n
    torch.testing.assert_close(s.probabilities, q, rtol=1e-6, atol=0)
    assert counts_p_value(torch.tensor(list(s)), q) > P_MIN


def test_tau_one_draws_only_scored_items():
    s = ImportanceSampler(100, tau=1.0, rule="last", seed=2)
    s.set_epoch(0)
    s.update(torch.tensor([3, 50, 99]), torch.tensor([1.0, 2.0, 1.0]))
    s.set_epoch(1)
    assert set(s) <= {3, 50, 99}


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("linear", [0.0, 0.25, 0.5, 0.75]),
        ("linear_decrease", [1.0, 0.75, 0.5, 0.25]),
        (0.3, [0.3] * 4),
        (lambda e: 1.0 if e >= 2 else 0.0, [0.0, 0.0, 1.0, 1.0]),
    ],
)
def test_tau_schedules(spec, expected):
    s = ImportanceSampler(10, epochs=4, tau=spec, seed=0)
    got = []
    for epoch in range(4):
        s.set_epoch(epoch)
        got.append(s.tau)
    assert got == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"epoch 4 is out of range.*0 \.\. 3 \(epochs=4\)"):
        s.set_epoch(4)  # epochs count from 0; a 1-based loop ends here
    assert s.epoch == 3 and s.tau == pytest.approx(expected[-1])  # unchanged


def test_out_of_range_epochs_raise_instead_of_clamping_tau():
    """rule="paper", tau clamped to 1 at set_epoch(epochs) gave every item that the
    last epoch did not draw probability 0."""
    s = ImportanceSampler(1000, epochs=5, seed=0)
    for epoch in range(5):
        s.set_epoch(epoch)
        s.update(torch.tensor(list(s)), torch.ones(1000))
    with pytest.raises(ValueError, match="epoch 5 is out of range"):
        s.set_epoch(5)
    assert (s.probabilities > 0).all()
    with pytest.raises(ValueError, match="epoch -1 is out of range"):
        ImportanceSampler(10, tau=0.5, seed=0).set_epoch(-1)  # no epochs given: any e >= 0
    ImportanceSampler(10, tau=0.5, seed=0).set_epoch(10**6)
    with pytest.raises(TypeError, match="epoch must be an int"):
        s.set_epoch(1.0)
    # The schedules themselves, which PathSampler uses too.
    delta = make_schedule("linear", 3, "delta")
    assert delta(2) == pytest.approx(2 / 3)
    for spec in ("linear", "linear_decrease", 0.5, lambda e: 0.5):
        with pytest.raises(ValueError, match="delta: epoch 3 is out of range"):
            make_schedule(spec, 3, "delta")(3)
    with pytest.raises(ValueError, match="positive int"):
        make_schedule(0.5, 0, "delta")


def test_paper_rule_restarts_every_epoch():
    s = ImportanceSampler(4, tau=1.0, rule="paper", seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([0, 1, 1]), torch.tensor([2.0, 4.0, 8.0]))
    s.set_epoch(1)
    torch.testing.assert_close(s.epoch_scores, torch.tensor([2.0, 6.0, 0.0, 0.0]))
    s.update(torch.tensor([2]), torch.tensor([1.0]))
    s.set_epoch(2)  # items 0 and 1 were not seen in epoch 1: back to 0
    torch.testing.assert_close(s.epoch_scores, torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_ema_rule_keeps_scores_across_epochs():
    s = ImportanceSampler(3, tau=1.0, rule="ema", decay=0.75, seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([0, 1]), torch.tensor([4.0, 1.0]))
    s.set_epoch(1)
    s.update(torch.tensor([0]), torch.tensor([8.0]))
    s.set_epoch(2)
    torch.testing.assert_close(s.epoch_scores, torch.tensor([0.75 * 4 + 0.25 * 8, 1.0, 0.0]))


def test_last_rule_and_duplicates_in_one_batch():
    s = ImportanceSampler(3, tau=1.0, rule="last", seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([1, 1, 1, 2]), torch.tensor([5.0, 6.0, 7.0, 1.0]))
    s.set_epoch(1)
    torch.testing.assert_close(s.epoch_scores, torch.tensor([0.0, 7.0, 1.0]))


def test_non_finite_scores_never_enter_the_table():
    s = ImportanceSampler(3, tau=1.0, rule="last", seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([0, 1, 2]), torch.tensor([1.0, float("nan"), float("inf")]))
    s.set_epoch(1)
    torch.testing.assert_close(s.epoch_scores, torch.tensor([1.0, 0.0, 0.0]))
    assert s.skipped_scores == 2
    assert torch.isfinite(s.probabilities).all()


def test_class_granularity():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    s = ImportanceSampler(
        100, num_samples=200_000, tau=1.0, rule="last", granularity="class", labels=labels, seed=3
    )
    s.set_epoch(0)
    # Items of class 0 score 1, of class 1 score 2: class scores [1, 2, 0].
    s.update(torch.tensor([0, 60]), torch.tensor([1.0, 2.0]))
    s.set_epoch(1)
    torch.testing.assert_close(s.epoch_scores, torch.tensor([1.0, 2.0, 0.0]))
    q = torch.cat([torch.full((50,), 1 / 3 / 50), torch.full((30,), 2 / 3 / 30), torch.zeros(20)])
    torch.testing.assert_close(s.probabilities, q.double())
    assert counts_p_value(torch.tensor(list(s)), q.double()) > P_MIN


def test_importance_weights_are_inverse_n_q():
    s = ImportanceSampler(5, tau=0.5, rule="last", seed=0)
    s.set_epoch(0)
    s.update(torch.arange(5), torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]))
    s.set_epoch(1)
    q = 0.5 * torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]) / 10 + 0.5 / 5
    idx = torch.tensor([4, 0, 3])
    torch.testing.assert_close(s.importance_weights(idx), (1 / (5 * q[idx])).float())
    # E_q[w_i f_i] = mean of f: the reweighting removes the sampling bias.
    f = torch.tensor([3.0, -1.0, 2.0, 5.0, 7.0], dtype=torch.float64)
    w = s.importance_weights(torch.arange(5)).double()
    torch.testing.assert_close((s.probabilities * w * f).sum(), f.mean())


def run_epochs(sampler, epochs, start=0, seed=0):
    """A fake training loop: scores derived from the indices, deterministic."""
    lists = []
    for epoch in range(start, start + epochs):
        sampler.set_epoch(epoch)
        draw = list(sampler)
        lists.append(draw)
        idx = torch.tensor(draw)
        for batch in idx.split(32):
            sampler.update(batch, ((batch * 7919 + epoch) % 101).float() + 1.0)
    return lists


@pytest.mark.parametrize("rule", ["paper", "ema"])
def test_state_dict_resume_draws_what_the_uninterrupted_run_draws(rule):
    full = run_epochs(ImportanceSampler(200, epochs=6, rule=rule, seed=9), 6)
    first = ImportanceSampler(200, epochs=6, rule=rule, seed=9)
    head = run_epochs(first, 3)
    state = first.state_dict()
    resumed = ImportanceSampler(200, epochs=6, rule=rule, seed=123)  # seed comes from the state
    resumed.load_state_dict(state)
    tail = run_epochs(resumed, 3, start=3)
    assert head + tail == full


def test_state_dict_mid_epoch_regenerates_the_current_epoch():
    s = ImportanceSampler(50, epochs=4, seed=4)
    run_epochs(s, 2)
    s.set_epoch(2)
    current = list(s)
    s.update(torch.tensor([1, 2]), torch.tensor([3.0, 4.0]))
    t = ImportanceSampler(50, epochs=4, seed=0)
    t.load_state_dict(s.state_dict())
    t.set_epoch(2)  # already started: no change
    assert list(t) == current
    s.set_epoch(3)
    t.set_epoch(3)
    assert list(t) == list(s)


def test_load_state_dict_rejects_another_configuration():
    state = ImportanceSampler(10, tau=0.5, rule="paper", seed=0).state_dict()
    with pytest.raises(ValueError, match="rule"):
        ImportanceSampler(10, tau=0.5, rule="last", seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="n="):
        ImportanceSampler(11, tau=0.5, rule="paper", seed=0).load_state_dict(state)


def test_dataloader_with_persistent_workers_sees_the_updates():
    data = IndexedDataset(TensorDataset(torch.arange(100).float()))
    sampler = ImportanceSampler(data, tau=1.0, rule="last", seed=5)
    loader = DataLoader(
        data, batch_size=10, sampler=sampler, num_workers=2, persistent_workers=True
    )
    sampler.set_epoch(0)
    scored = set()
    for x, idx in loader:
        torch.testing.assert_close(x, idx.float())  # the index is the sample's own
        keep = idx < 30
        sampler.update(idx, keep.float())
        scored |= set(idx[keep].tolist())
    sampler.set_epoch(1)
    second = [i for _, idx in loader for i in idx.tolist()]
    assert len(second) == 100
    assert set(second) <= scored  # only items that scored > 0 are drawn at tau = 1


def test_indexed_dataset_wraps_tuples_and_plain_items():
    assert IndexedDataset([("a", 1), ("b", 2)])[1] == ("b", 2, 1)
    assert IndexedDataset(["x", "y"])[0] == ("x", 0)
    assert len(IndexedDataset(range(7))) == 7


def test_sharding_without_a_process_group():
    parts = [
        ImportanceSampler(100, num_samples=101, tau=0.0, seed=7, num_replicas=3, rank=r)
        for r in range(3)
    ]
    for p in parts:
        p.set_epoch(0)
    full = parts[0].epoch_indices().tolist()
    assert len(full) == 3 * 34 and all(len(p) == 34 for p in parts)
    assert sorted(sum((list(p) for p in parts), [])) == sorted(full)
    dropped = ImportanceSampler(
        100, num_samples=101, tau=0.0, seed=7, num_replicas=3, rank=0, drop_last=True
    )
    assert len(dropped) == 33


def test_two_processes_on_gloo(tmp_path):
    init_file = tmp_path / "init"
    mp.spawn(
        __import__("dist_workers").importance_sampler_worker,
        args=(2, str(init_file), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["seed"] == r1["seed"]
    expected = torch.zeros(40)
    expected[:10], expected[10:20], expected[20] = 1.0, 2.0, 1.5  # item 20: mean of 1 and 2
    torch.testing.assert_close(r0["epoch_scores"], expected)
    torch.testing.assert_close(r1["epoch_scores"], expected)
    torch.testing.assert_close(r0["draw"], r1["draw"])  # the same epoch list on every rank
    assert r0["len"] == r1["len"] == 501
    assert torch.equal(r0["shard"], r0["draw"][0::2]) and torch.equal(r1["shard"], r0["draw"][1::2])
    assert set(r0["draw"].tolist()) <= set(range(21))  # tau = 1: only scored items


def authors_epoch(batches, n, tau):
    """The authors' data-sampling rule restated in plain Python: for each index
    seen in the epoch, the first value is stored, a repeat averages (s + v) / 2
    in visit order; unseen indices score 0; q = tau s / sum(s) + (1 - tau) / N."""
    score = {}
    for indices, values in batches:
        for i, v in zip(indices, values):
            score[i] = (score[i] + v) / 2 if i in score else v
    total = sum(score.values())
    return [
        tau * score.get(i, 0.0) / total + (1 - tau) / n if total > 0 else 1 / n for i in range(n)
    ]


def test_paper_configuration_replays_the_authors_rule():
    n, epochs = 64, 6
    s = ImportanceSampler.paper(n, epochs=epochs, seed=11)
    g = torch.Generator().manual_seed(0)
    recorded = []
    for epoch in range(epochs - 1):
        s.set_epoch(epoch)
        if epoch == 0:
            # Their epoch 0 is a plain shuffled pass: every item once, no importance draw.
            first = list(s)
            assert sorted(first) == list(range(n)) and first != list(range(n))
        else:
            # Their code builds epoch e's draw at the end of epoch e - 1, with
            # the tau of that epoch: (e - 1) / epochs.
            want = authors_epoch(recorded[-1], n, (epoch - 1) / epochs)
            torch.testing.assert_close(
                s.probabilities, torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=1e-9
            )
            draw = torch.cat([s.epoch_indices() for _ in range(1)])
            assert draw.numel() == n  # N draws with replacement per epoch
        batches = []
        for _ in range(6):  # a recorded sequence of batches, with repeats
            idx = torch.randint(n, (16,), generator=g)
            val = torch.rand(16, generator=g) * 2
            s.update(idx, val)
            batches.append((idx.tolist(), val.tolist()))
        recorded.append(batches)
    # And the last epoch's draws follow that distribution.
    s.set_epoch(epochs - 1)
    want = torch.tensor(authors_epoch(recorded[-1], n, (epochs - 2) / epochs), dtype=torch.float64)
    big = ImportanceSampler.paper(n, epochs=epochs, num_samples=300_000, seed=11)
    big.load_state_dict(s.state_dict())
    assert counts_p_value(torch.tensor(list(big)), want) > P_MIN


def test_shuffled_first_epoch_covers_every_item_also_when_sharded():
    parts = [
        ImportanceSampler.paper(10, epochs=3, num_samples=25, seed=5, num_replicas=2, rank=r)
        for r in range(2)
    ]
    for p in parts:
        p.set_epoch(0)
    full = parts[0].epoch_indices()
    assert full.numel() == 26  # 13 per rank
    counts = torch.bincount(full, minlength=10)
    assert counts.min() >= 2 and counts.max() <= 3  # whole passes, then part of one
    assert sorted(full[:10].tolist()) == list(range(10))
    assert sorted(list(parts[0]) + list(parts[1])) == sorted(full.tolist())
    parts[0].set_epoch(1)  # later epochs draw with replacement
    assert parts[0].epoch_indices().numel() == 26


def _construction_raises(kwargs, error, match):
    """ImportanceSampler(10, tau=0.5 unless given, **kwargs) raises `error`."""
    kwargs.setdefault("tau", 0.5)
    with pytest.raises(error, match=match):
        ImportanceSampler(10, **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"rule": "median"}, ValueError, "rule"),
        ({"tau": "cosine", "epochs": 3}, ValueError, "unknown schedule"),
        ({"tau": "linear"}, ValueError, "epochs"),
        ({"tau": 1.5}, ValueError, r"tau must be in \[0, 1\]"),
        ({"granularity": "class"}, ValueError, "labels"),
        ({"granularity": "batch"}, ValueError, "granularity"),
        ({"decay": 0.5}, ValueError, "rule='ema'"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_replicas": 2, "rank": 2}, ValueError, "rank"),
    ],
)
def test_bad_configuration(kwargs, error, match):
    _construction_raises(kwargs, error, match)


def test_bad_updates():
    s = ImportanceSampler(10, tau=0.5, seed=0)
    with pytest.raises(IndexError, match="out of range"):
        s.update(torch.tensor([10]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="alike"):
        s.update(torch.tensor([1, 2]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="int64"):
        s.update(torch.tensor([1.0]), torch.tensor([1.0]))
    callable_tau = ImportanceSampler(10, tau=lambda e: 2.0 if e > 0 else 0.0, seed=0)
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\], got 2.0"):
        callable_tau.set_epoch(1)


def test_importance_weights_check_their_indices():
    s = ImportanceSampler(5, tau=0.5, seed=0)
    s.set_epoch(0)
    with pytest.raises(IndexError, match=r"indices\[1\] = 5 is out of range for 5 samples"):
        s.importance_weights(torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="int64 or int32"):
        s.importance_weights(torch.tensor([0.0]))
    torch.testing.assert_close(s.importance_weights([4, 0]), torch.ones(2))


def test_seed_from_torch_manual_seed():
    torch.manual_seed(0)
    a = ImportanceSampler(1000, tau=0.0)
    torch.manual_seed(0)
    b = ImportanceSampler(1000, tau=0.0)
    a.set_epoch(0)
    b.set_epoch(0)
    assert list(a) == list(b)


def test_dataset_size_from_dataset():
    s = ImportanceSampler(IndexedDataset(list(range(17))), tau=0.0, seed=0)
    s.set_epoch(0)
    assert len(s) == 17 and len(list(s)) == 17


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_credits_each_sample_its_gradient_norm(reduction):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g, requires_grad=True)
    targets = torch.randint(5, (8,), generator=g)
    indices = torch.tensor([3, 9, 3, 0, 1, 2, 4, 7])
    s = ImportanceSampler(10, tau=1.0, rule="paper", seed=0)
    s.set_epoch(0)
    loss = s.cross_entropy(logits, targets, indices, reduction=reduction)
    want = torch.nn.functional.cross_entropy(logits, targets, reduction=reduction)
    torch.testing.assert_close(loss, want)
    loss.sum().backward()  # the gradient flows as through F.cross_entropy
    norms = (torch.softmax(logits.detach(), 1) - torch.nn.functional.one_hot(targets, 5)).norm(
        dim=1
    )
    s.set_epoch(1)
    expected = torch.zeros(10)
    expected[[9, 0, 1, 2, 4, 7]] = norms[[1, 3, 4, 5, 6, 7]]
    expected[3] = (norms[0] + norms[2]) / 2  # the authors' rule, in batch order
    torch.testing.assert_close(s.epoch_scores, expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_reweighted_by_importance_weights():
    g = torch.Generator().manual_seed(1)
    s = ImportanceSampler(4, tau=0.5, rule="last", seed=0)
    s.set_epoch(0)
    s.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    s.set_epoch(1)
    logits = torch.randn(4, 3, generator=g)
    targets = torch.tensor([0, 1, 2, 0])
    idx = torch.tensor([0, 1, 2, 3])
    loss = s.cross_entropy(logits, targets, idx, reweight=True)
    per = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    w = 1 / (4 * s.probabilities[idx]).float()
    torch.testing.assert_close(loss, (per * w).mean())


def test_nan_logits_do_not_poison_the_table():
    s = ImportanceSampler(3, tau=1.0, rule="last", seed=0)
    s.set_epoch(0)
    logits = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [2.0, 0.0]])
    s.cross_entropy(logits, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), reduction="none")
    s.set_epoch(1)
    assert s.skipped_scores == 1
    assert s.epoch_scores[1] == 0 and (s.epoch_scores[[0, 2]] > 0).all()
    assert torch.isfinite(s.probabilities).all()


# -- devices: the per-step path without host syncs, CPU and CUDA alike ------------------


def classifier_data(n=96, features=7, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(classes, (n,), generator=g)
    return x, y


def make_classifier(device, features=7, classes=5):
    torch.manual_seed(3)
    return torch.nn.Linear(features, classes).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "granularity,reweight,amp",
    [("item", False, False), ("item", True, False), ("class", True, False), ("item", True, True)],
    ids=["item", "item-reweight", "class-reweight", "item-reweight-bf16"],
)
def test_training_steps_do_not_sync(device, granularity, reweight, amp):
    """A DataLoader epoch of IndexedDataset batches (indices on the host, pinned on
    CUDA), the fused loss with scores, backward and SGD step, under torch's sync debug
    mode "error" on CUDA: the first update places the tables, later epochs reweight."""
    x, y = classifier_data()
    data = IndexedDataset(TensorDataset(x, y))
    labels = y if granularity == "class" else None
    sampler = ImportanceSampler(
        data, epochs=3, granularity=granularity, labels=labels, rule="ema", seed=2
    )
    loader = DataLoader(data, batch_size=16, sampler=sampler, pin_memory=device == "cuda")
    model = make_classifier(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dev_type = torch.device(device).type
    for epoch in range(3):
        sampler.set_epoch(epoch)  # the documented once-per-epoch read-backs
        batches = list(loader)  # draws the epoch's list (a read-back): outside the check
        with no_sync(device):
            for xb, yb, idx in batches:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                autocast = torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp)
                with autocast:
                    loss = sampler.cross_entropy(model(xb), yb, idx, reweight=reweight)
                assert loss.dtype == torch.float32
                opt.zero_grad()
                loss.backward()
                opt.step()
    assert sampler.scores.device.type == dev_type and sampler.visited.any()
    assert sampler.skipped_scores == 0 and torch.isfinite(sampler.probabilities).all()


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_under_autocast_is_f_cross_entropys(device):
    """bf16 autocast: the loss is computed in float32 as F.cross_entropy's is."""
    x, y = classifier_data(n=12)
    model = make_classifier(device)
    x, y = x.to(device), y.to(device)
    s = ImportanceSampler(12, tau=0.0, seed=0)
    s.set_epoch(0)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = s.cross_entropy(logits, y, torch.arange(12))
        want = torch.nn.functional.cross_entropy(logits, y)
    assert loss.dtype == want.dtype == torch.float32
    torch.testing.assert_close(loss, want)
    norms = (torch.softmax(logits.float(), 1) - torch.nn.functional.one_hot(y, 5)).norm(dim=1)
    torch.testing.assert_close(s.scores, norms.detach(), rtol=1e-5, atol=1e-6)


@requires_cuda
@pytest.mark.parametrize("granularity", ["item", "class"])
def test_cuda_run_matches_the_cpu_run_and_resumes_on_cuda(granularity):
    """A classifier trained on CPU and on CUDA from the same batches: the same scores
    and distributions (to float32 rounding), the same first epoch's list; a state_dict
    moves between devices and then both draw the very same lists."""
    x, y = classifier_data()
    data = IndexedDataset(TensorDataset(x, y))
    labels = y if granularity == "class" else None

    def sampler(seed=4, device=None):
        return ImportanceSampler(
            data, epochs=4, granularity=granularity, labels=labels, seed=seed, device=device
        )

    samplers = {"cpu": sampler(), "cuda": sampler(device="cuda")}  # draws on CUDA from epoch 0
    models = {d: make_classifier(d) for d in samplers}
    opts = {d: torch.optim.SGD(m.parameters(), lr=0.1) for d, m in models.items()}
    for epoch in range(3):
        for s in samplers.values():
            s.set_epoch(epoch)
        lists = {d: list(s) for d, s in samplers.items()}
        if epoch == 0:
            assert lists["cuda"] == lists["cpu"]  # uniform on both: the very same draw
        for idx in torch.tensor(lists["cpu"]).split(16):
            for d in samplers:
                xb, yb = x[idx].to(d), y[idx].to(d)
                loss = samplers[d].cross_entropy(models[d](xb), yb, idx, reweight=True)
                opts[d].zero_grad()
                loss.backward()
                opts[d].step()
        torch.testing.assert_close(
            samplers["cuda"].scores.cpu(), samplers["cpu"].scores, rtol=1e-4, atol=1e-6
        )
        torch.testing.assert_close(
            samplers["cuda"].probabilities.cpu(), samplers["cpu"].probabilities, rtol=1e-4, atol=0
        )
    assert samplers["cuda"].scores.is_cuda
    resumed = sampler(seed=0, device="cuda")
    resumed.load_state_dict(samplers["cpu"].state_dict())
    back = sampler(seed=1)
    back.load_state_dict(resumed.state_dict())
    for s in (samplers["cpu"], resumed, back):
        s.set_epoch(3)
    assert resumed.scores.is_cuda
    assert list(resumed) == list(samplers["cpu"]) == list(back)


# -- policies: negative scores, overflow, snapshots, repeated epochs, arguments ----------


def test_negative_scores_are_rejected_where_they_enter():
    s = ImportanceSampler(10, tau=1.0, rule="last", seed=0)
    s.set_epoch(0)
    for bad in (-5.0, -0.5):
        with pytest.raises(ValueError, match=rf"scores\[1\] = {bad} \(dataset index 7\) is neg"):
            s.update(torch.tensor([3, 7]), torch.tensor([1.0, bad]))
    assert not s.visited.any()  # nothing of the batch entered
    s.update(torch.tensor([3]), torch.tensor([-0.0]))  # -0 is a valid zero
    s.set_epoch(1)
    labels = torch.tensor([0, 1] * 5)
    c = ImportanceSampler(10, tau=1.0, granularity="class", labels=labels, rule="last", seed=0)
    with pytest.raises(ValueError, match=r"scores\[0\] = -1.0 \(dataset index 4\)"):
        c.update(torch.tensor([4]), torch.tensor([-1.0]))


OP_BACKENDS = [*BACKEND_DEVICES, pytest.param("cpu", "reference", id="cpu-reference")]


def fresh_table(size, device):
    return (
        torch.zeros(size, device=device),
        torch.zeros(size, dtype=torch.bool, device=device),
        torch.zeros(2, dtype=torch.int64, device=device),
    )


@pytest.mark.parametrize("device,backend", OP_BACKENDS)
def test_importance_update_rejects_negative_values(device, backend):
    """CPU: raises before any change, naming the entry. CUDA: no host sync; the
    entry is skipped and counted in status[0] (raised by the sampler's set_epoch)."""
    scores, visited, status = fresh_table(4, device)
    index = torch.tensor([0, 1, 3], device=device)
    values = torch.tensor([1.0, 2.0, -0.5], device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match=r"values\[2\] = -0.5 \(for index\[2\] = 3\) is neg"):
            ops.importance_update_(scores, visited, status, index, values, 0.5, backend=backend)
        assert not visited.any() and not scores.any() and not status.any()
        return
    ops.importance_update_(scores, visited, status, index, values, 0.5, backend=backend)  # warm
    scores, visited, status = fresh_table(4, device)
    with no_sync(device):
        ops.importance_update_(scores, visited, status, index, values, 0.5, backend=backend)
    torch.testing.assert_close(scores.cpu(), torch.tensor([1.0, 2.0, 0.0, 0.0]))
    assert visited.tolist() == [True, True, False, False] and status.tolist() == [1, 0]


@pytest.mark.parametrize("device,backend", OP_BACKENDS)
def test_importance_update_checks_finiteness_in_the_tables_dtype(device, backend):
    """1e39 is a finite float64 but inf as float32: skipped and counted, never stored."""
    scores, visited, status = fresh_table(3, device)
    values = torch.tensor([1.0, 1e39, -1e39], dtype=torch.float64, device=device)
    index = torch.tensor([0, 1, 2], device=device)
    ops.importance_update_(*fresh_table(3, device), index, values, 0.5, backend=backend)  # warm
    with no_sync(device):
        ops.importance_update_(scores, visited, status, index, values, 0.5, backend=backend)
    torch.testing.assert_close(scores.cpu(), torch.tensor([1.0, 0.0, 0.0]))
    assert visited.tolist() == [True, False, False] and status.tolist() == [0, 2]


def test_cpu_kernel_screens_values_itself():
    """The compiled CPU kernel, called directly (no Python screening in front):
    a negative value raises before any change, naming it; a float64 that is inf
    as float32 is skipped and counted."""
    scores, visited, status = fresh_table(4, "cpu")
    index = torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match=r"values\[2\] = -0.5 \(for index\[2\] = 3\) is neg"):
        torch.ops.pada.importance_update_(
            scores, visited, status, index, torch.tensor([1.0, 2.0, -0.5]), 0.5
        )
    assert not visited.any() and not scores.any() and not status.any()
    values = torch.tensor([1.0, 1e39, -1e39], dtype=torch.float64)
    torch.ops.pada.importance_update_(scores, visited, status, index, values, 0.5)
    assert scores.tolist() == [1.0, 0.0, 0.0, 0.0] and status.tolist() == [0, 2]
    assert visited.tolist() == [True, False, False, False]


def _cuda_sampler_after_update(size, index, scores):
    """A CUDA ImportanceSampler(size, tau=1, rule="last") in epoch 0, its kernels
    warmed by one update, after update(index, scores) with no host sync."""
    s = ImportanceSampler(size, tau=1.0, rule="last", seed=0, device="cuda")
    s.set_epoch(0)
    s.update(torch.tensor([0]), torch.tensor([1.0], device="cuda"))  # warm the kernels
    with no_sync("cuda"):
        s.update(index, scores)
    return s


@requires_cuda
def test_negative_scores_and_bad_indices_on_cuda_raise_at_set_epoch():
    cuda = lambda *values, **kw: torch.tensor(values, device="cuda", **kw)
    s = _cuda_sampler_after_update(10, torch.tensor([3, 7]), cuda(1.0, -5.0))
    with pytest.raises(ValueError, match="1 negative scores"):
        s.set_epoch(1)
    t = _cuda_sampler_after_update(10, torch.tensor([3, 12]), cuda(1.0, 2.0))
    with pytest.raises(IndexError, match="1 scores had a dataset index out of range"):
        t.set_epoch(1)
    u = _cuda_sampler_after_update(3, torch.tensor([1]), cuda(1e39, dtype=torch.float64))
    u.set_epoch(1)
    assert u.skipped_scores == 1 and set(u) == {0}


def test_sampler_skips_scores_that_overflow_the_table():
    s = ImportanceSampler(3, tau=1.0, rule="last", seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([0, 1]), torch.tensor([1.0, 1e39], dtype=torch.float64))
    s.set_epoch(1)
    assert s.skipped_scores == 1
    assert set(s) == {0}  # the draw works; only the finite score counts


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"decay": 1.5}, ValueError, "decay must be in"),
        ({"decay": float("nan")}, ValueError, "decay must be in"),
        ({"decay": "0.5"}, TypeError, "decay must be a float"),
        ({"values": torch.ones(2)}, ValueError, r"one value per index, got shape \(2,\) for 3"),
        ({"values": torch.ones(4)}, ValueError, "one value per index"),
        ({"index": [0, 1, 2]}, TypeError, "index must be a Tensor, got list"),
        ({"values": [1.0, 2.0, 3.0]}, TypeError, "values must be a Tensor"),
        ({"index": torch.zeros(3)}, TypeError, "index must be int64"),
        ({"index": torch.zeros(1, 3, dtype=torch.int64)}, ValueError, "index must be 1-D"),
    ],
)
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_importance_update_validates_for_every_backend(kwargs, error, match, backend):
    args = importance_update_args(**kwargs)
    with pytest.raises(error, match=match):
        ops.importance_update_(**args, backend=backend)
    assert not args["scores"].any()


def test_compiled_importance_update_still_rejects_negative_values():
    def step(scores, visited, status, index, values):
        ops.importance_update_(scores, visited, status, index, values, 0.5)
        return scores.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    args = (torch.zeros(4), torch.zeros(4, dtype=torch.bool), torch.zeros(2, dtype=torch.int64))
    compiled(*args, torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="negative"):
        compiled(*args, torch.tensor([0, 1]), torch.tensor([1.0, -2.0]))


@pytest.mark.parametrize("rule", ["paper", "ema"])
def test_state_dict_is_a_snapshot(rule):
    s = ImportanceSampler(6, tau=1.0, rule=rule, seed=0)
    s.set_epoch(0)
    s.update(torch.tensor([1, 2]), torch.tensor([3.0, 4.0]))
    state = s.state_dict()
    saved = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    s.update(torch.tensor([1, 5]), torch.tensor([9.0, 1.0]))
    s.set_epoch(1)  # rule="paper" zeroes the live tables here
    s.update(torch.tensor([0]), torch.tensor([2.0]))
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    t = ImportanceSampler(6, tau=1.0, rule=rule, seed=1)
    t.load_state_dict(state)
    t.update(torch.tensor([3]), torch.tensor([5.0]))  # loading copies, too
    assert torch.equal(state["scores"], saved["scores"])


def test_iterating_again_without_set_epoch_warns_once():
    s = ImportanceSampler(50, epochs=3, seed=0)
    s.set_epoch(0)
    first = list(s)
    with pytest.warns(RuntimeWarning, match="without set_epoch"):
        again = list(s)
    assert again == first  # the documented repeat, no longer silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(s)  # once only
        for epoch in (1, 2):  # the documented loop never warns
            t = ImportanceSampler(50, epochs=3, seed=0)
            t.set_epoch(epoch)
            list(t)
            s.set_epoch(epoch)
            list(s)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"seed": "3"}, TypeError, "seed must be an int"),
        ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*64\)"),
        ({"seed": 2**64}, ValueError, r"seed must be in \[0, 2\*\*64\)"),
        ({"num_samples": 2.5}, TypeError, "num_samples must be an int"),
        ({"num_classes": 2.0, "granularity": "class", "labels": [0, 1] * 5}, TypeError, "num_cl"),
        ({"granularity": "class", "labels": [0.0, 1.5] * 5}, TypeError, "integer class"),
        ({"epochs": 2.0}, ValueError, "positive int"),
        ({"rank": 0.0, "num_replicas": 2}, TypeError, "rank must be an int"),
    ],
)
def test_unclear_arguments_raise_at_the_call(kwargs, error, match):
    _construction_raises(kwargs, error, match)


def test_largest_seed_works_in_every_epoch():
    s = ImportanceSampler(20, epochs=3, seed=2**64 - 1)
    lists = []
    for epoch in range(3):
        s.set_epoch(epoch)  # seed + epoch wraps around 2**64
        lists.append(list(s))
    zero = ImportanceSampler(20, epochs=3, seed=0)
    zero.set_epoch(0)
    assert lists[1] == list(zero)  # (2**64 - 1) + 1 wraps to seed 0; both uniform draws
    assert len({tuple(x) for x in lists}) == 3


# -- distributed: agreed errors, group devices -------------------------------------------


def spawn(worker, tmp_path, *args):
    mp.spawn(
        getattr(__import__("dist_workers"), worker),
        args=(2, str(tmp_path / "init"), str(tmp_path), *args),
        nprocs=2,
        join=True,
    )
    return [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]


@pytest.mark.parametrize(
    "counter,error",
    [
        ("status", "IndexError: ImportanceSampler: 1 scores had a dataset index out of range"),
        ("negative", "ValueError: ImportanceSampler: 1 negative scores"),
    ],
)
def test_an_error_counted_on_one_rank_raises_on_every_rank(tmp_path, counter, error):
    """Rank 1 alone has a device-counted error: before, it raised ahead of the
    all-reduce and rank 0 waited in it until the timeout."""
    outcomes = [r["outcome"] for r in spawn("agreed_error_worker", tmp_path, counter)]
    assert all(o.startswith(error) for o in outcomes), outcomes


@pytest.mark.parametrize(
    "backend,picked",
    [("gloo", "cpu"), ("cpu:gloo", "cpu"), ("cuda:gloo", "cuda")],
)
def test_collectives_run_on_a_device_the_group_supports(tmp_path, backend, picked):
    """A "cuda:gloo" group accepts CUDA tensors only, as NCCL does: CPU seeds and
    tables must travel to the current CUDA device for the collective. On a GPU
    machine the worker also runs both samplers' collectives on that group."""
    r0, r1 = spawn("collective_device_worker", tmp_path, backend)
    assert picked in r0["types"] and r0["types"] == r1["types"]
    if picked == "cuda" and not torch.cuda.is_available():
        # Without a GPU a CUDA-only group cannot run them: a clear error, not
        # "No backend type associated with device type cpu".
        for r in (r0, r1):
            assert "supports CUDA tensors only" in r["picked"]
            assert "supports CUDA tensors only" in r["seed"]
        return
    assert r0["picked"].split(":")[0] == r1["picked"].split(":")[0] == picked
    assert r0["seed"] == r1["seed"]
    if torch.cuda.is_available():
        expected = torch.tensor([1.0, 2.0, 0, 0, 2.5, 0, 0, 0])
        for device in (None, "cuda"):
            assert r0[f"seed_{device}"] == r1[f"seed_{device}"]
            torch.testing.assert_close(r0[f"epoch_scores_{device}"], expected)
            torch.testing.assert_close(r1[f"epoch_scores_{device}"], expected)
        assert r0["path_seed"] == r1["path_seed"]
        torch.testing.assert_close(r0["path_probs"], r1["path_probs"])


def test_collective_device_from_the_backend_string(monkeypatch):
    import torch.distributed as dist

    from pada_ext import _distributed

    cases = {
        "nccl": ["cuda"],
        "gloo": ["cpu", "cuda"],
        "cpu:gloo,cuda:nccl": ["cpu", "cuda"],
        "cuda:nccl": ["cuda"],
    }
    for backend, types in cases.items():
        monkeypatch.setattr(dist, "get_backend", lambda group=None, b=backend: b)
        assert _distributed.group_device_types() == types
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    if torch.cuda.is_available():
        assert _distributed.collective_device(torch.device("cpu")) == torch.device(
            "cuda", torch.cuda.current_device()
        )
        assert _distributed.collective_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(RuntimeError, match="supports CUDA tensors only"):
            _distributed.collective_device(torch.device("cpu"))
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "cpu:gloo,cuda:nccl")
    assert _distributed.collective_device(torch.device("cpu")) == torch.device("cpu")


def test_one_vocabulary_with_the_path_sampler():
    """Both samplers say probabilities, visited and restart_every_epoch;
    distribution() stays as a deprecated alias."""
    s = ImportanceSampler(4, tau=1.0, rule="paper", seed=0)
    s.set_epoch(0)
    assert s.restart_every_epoch and s.visited.shape == (4,)
    with pytest.warns(DeprecationWarning, match="probabilities"):
        assert torch.equal(s.distribution(), s.probabilities)
