"""pada_nas: ranking metrics, gradient variance, the four samplers' training
runs on a tiny supernet, determinism and the command line's outputs."""

import json
import random

import numpy as np
import pytest
import torch
from pada_nas import __main__ as cli
from pada_nas.metrics import GradVariance, kendall_tau, precision_at_top, top_k_count
from pada_nas.nb201 import all_paths
from pada_nas.train import SAMPLERS, load_split, make_config, train
from scipy import stats

pytestmark = pytest.mark.usefixtures("one_thread")


# 5 epochs of 13 steps: enough to leave chance level, a few seconds per run.
TINY = dict(
    channels=4, cells=1, train_size=200, epochs=5, batch_size=16, eval_every=2, test_size=128
)


def fake_sets(seed=0):
    """Small path sets with made-up accuracies (tests only, never ground truth)."""
    r = random.Random(seed)
    sub = all_paths([2, 3])[::8]
    rnd = r.sample(all_paths(), 8)
    acc = lambda p: 0.5 + 0.05 * p.count(3) - 0.05 * p.count(0) + r.gauss(0, 0.01)
    return {"sub64": (sub, [acc(p) for p in sub]), "random": (rnd, [acc(p) for p in rnd])}


# -- metrics --------------------------------------------------------------------------


def test_kendall_tau_is_scipys_tau_b():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of 6: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 50), rng.integers(0, 5, 50)  # with ties
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b, variant="b").statistic)


def test_precision_at_top5_by_hand():
    assert top_k_count(64) == 3 and top_k_count(40) == 2 and top_k_count(10) == 1
    truth = np.arange(40.0)  # best: 39, 38
    pred = truth.copy()
    assert precision_at_top(pred, truth) == 1.0
    pred[39] = -1  # the supernet's top 2 become 38, 37: one of two is right
    assert precision_at_top(pred, truth) == 0.5
    assert precision_at_top(-truth, truth) == 0.0
    truth64 = np.arange(64.0)
    pred64 = truth64.copy()
    pred64[[63, 62]] = 0  # top 3 predicted: 61, 60, 59; true: 63, 62, 61
    assert precision_at_top(pred64, truth64) == pytest.approx(1 / 3)


def test_gradient_variance_by_hand():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    gv = GradVariance([[[a], [b]]])  # one decision, two ops
    for g in ([1.0, 2.0], [3.0, 6.0], [5.0, 10.0]):
        a.grad = torch.tensor(g)
        gv.add([0])
    b.grad = torch.tensor([7.0])
    gv.add([1])  # trained once: no variance, not counted
    # variances over the 3 steps: var(1, 3, 5) = 4, var(2, 6, 10) = 16
    assert gv.epoch_value() == pytest.approx(10.0)
    assert np.isnan(gv.epoch_value())  # restarted


# -- training --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split():
    return load_split(make_config("small", **TINY))


@pytest.mark.parametrize("kind", SAMPLERS)
def test_each_sampler_trains_and_scores(kind, split):
    cfg = make_config("small", **TINY)
    rec = train(kind, cfg, seed=0, eval_sets=fake_sets(), split=split, progress=False)
    assert all(np.isfinite(rec["loss"])) and rec["loss"][-1] < rec["loss"][0] - 0.05
    assert rec["train_acc"][-1] > 0.15  # 10 classes: chance is 0.1
    assert all(g > 0 and np.isfinite(g) for g in rec["gv"])
    for name in ("sub64", "random"):
        final = rec["final"][name]
        assert -1 <= final["kt"] <= 1 and 0 <= final["p_top5"] <= 1
        assert len(final["supernet_acc"]) == len(fake_sets()[name][0])
        assert rec["curves"][name]["epoch"] == [2, 4, 5]
    if kind in ("pa", "pada"):
        # conv ops scored; parameter-free ones never; the last epoch drew from p != uniform
        scores = rec["path_scores"]
        assert scores[2] > 0 and scores[3] > 0 and scores[0] == scores[1] == scores[4] == 0
        assert max(abs(p - 0.2) for p in rec["path_probs"]) > 0.01
        assert rec["path_probs"][3] > 0.2
    else:
        assert "path_probs" not in rec
    if kind in ("da", "pada"):
        assert rec["data_scored"] > 100 and rec["data_score_mean"] > 0
        assert rec["data_q_max_over_uniform"] > 1.2  # tau = 3/5 in the last epoch
    else:
        assert "data_scored" not in rec


def test_training_is_deterministic_under_a_seed(split):
    cfg = make_config("small", **dict(TINY, epochs=2))
    runs = [train("pada", cfg, 5, fake_sets(), split, progress=False) for _ in range(2)]
    assert runs[0]["loss"] == runs[1]["loss"]
    assert runs[0]["gv"] == runs[1]["gv"]
    assert runs[0]["final"] == runs[1]["final"]
    other = train("pada", cfg, 6, fake_sets(), split, progress=False)
    assert other["loss"] != runs[0]["loss"]


def test_command_line_writes_documented_outputs(tmp_path, capsys):
    sets = fake_sets()
    gt = {
        "dataset": "digits",
        "command": "fake",
        "seeds": [0, 1],
        "config": {"train_size": 200, "split_seed": 0, "channels": 4, "cells": 1},
        "results": [
            {"path": p, "set": name, "test_acc": [a, a]}
            for name, (paths, accs) in sets.items()
            for p, a in zip(paths, accs)
        ],
        "seed_kendall_tau": {"sub64": 0.5, "random": 0.9},
    }
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    out = tmp_path / "out"
    args = ["--samplers", "spos,pada", "--seeds", "2", "--epochs", "2", "--batch-size", "32"]
    args += ["--test-size", "128"]
    cli.main(args + ["--ground-truth", str(gt_file), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "| DA | PA | KT (sub64) | P@Top5% (sub64) | KT (random)" in printed
    payload = json.loads((out / "results.json").read_text())
    for key in ("command", "config", "samplers", "seeds", "ground_truth", "summary", "table"):
        assert key in payload
    assert payload["config"]["channels"] == 4 and payload["config"]["epochs"] == 2
    assert payload["seeds"] == [0, 1] and len(payload["runs"]) == 4
    row = payload["summary"]["pada"]
    for key in ("sub64_kt", "sub64_p_top5", "random_kt", "random_p_top5", "mean_gv"):
        assert len(row[key]) == 2 and np.isfinite(row[key][0])
    for name in ("table.md", "kt.png", "gv.png"):
        assert (out / name).stat().st_size > 0
