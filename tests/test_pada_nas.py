"""pada_nas: ranking metrics, gradient variance, the four samplers' training
runs on a tiny supernet, determinism and the command line's outputs."""

import json
import os
import pickle
import random
import sys

import numpy as np
import pytest
import torch
from conftest import DEVICES, requires_cuda
from pada_nas import __main__ as cli
from pada_nas import data as datasets
from pada_nas.config import SAMPLERS, load_split, make_config
from pada_nas.metrics import GradVariance, kendall_tau, precision_at_top, top_k_count
from pada_nas.nb201 import all_paths
from pada_nas.train import train
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
    # Entropy over the uniform one's, per epoch: 1 while a sampler draws uniformly
    # (SPOS always; the paper's schedules in their first epochs), below 1 once it learns.
    for key, learns in (
        ("path_entropy", kind in ("pa", "pada")),
        ("data_entropy", kind in ("da", "pada")),
    ):
        h = rec[key]
        assert len(h) == cfg.epochs and all(0 < v <= 1 + 1e-12 for v in h)
        assert h[0] == pytest.approx(1.0)
        assert (h[-1] < 0.999) == learns


def test_normalised_entropy_by_hand():
    import torch
    from pada_nas.train import normalised_entropy

    assert float(normalised_entropy(torch.full((5,), 0.2))) == pytest.approx(1.0)
    assert float(normalised_entropy(torch.tensor([1.0, 0.0, 0.0, 0.0]))) == 0.0
    p = torch.tensor([0.5, 0.25, 0.25, 0.0])
    assert float(normalised_entropy(p)) == pytest.approx(1.5 * np.log(2) / np.log(4))
    rows = normalised_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert rows.tolist() == pytest.approx([1.0, 0.0])


# -- paired statistics --------------------------------------------------------------------


def test_paired_difference_matches_scipy_and_a_by_hand_bootstrap():
    from pada_nas.stats import paired_difference

    a = [0.61, 0.58, 0.66, 0.70, 0.59, 0.63, 0.65, 0.62]
    b = [0.55, 0.57, 0.60, 0.61, 0.60, 0.58, 0.59, 0.57]
    d = np.subtract(a, b)
    out = paired_difference(a, b, resamples=2000, seed=3)
    assert out["n"] == 8 and out["mean"] == pytest.approx(d.mean())
    assert out["p"] == pytest.approx(stats.wilcoxon(d).pvalue)
    rng = np.random.default_rng(3)
    boot = d[rng.integers(0, 8, size=(2000, 8))].mean(1)
    assert [out["ci_low"], out["ci_high"]] == pytest.approx(np.quantile(boot, [0.025, 0.975]))
    assert out["significant"]  # 7 of 8 seeds better, interval above 0
    # the same pairs the other way round: the mirror image
    back = paired_difference(b, a, resamples=2000, seed=3)
    assert back["mean"] == pytest.approx(-out["mean"]) and back["p"] == pytest.approx(out["p"])


def test_paired_difference_says_no_when_there_is_nothing():
    from pada_nas.stats import paired_difference

    same = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["mean"] == 0 and same["p"] == 1.0 and not same["significant"]
    mixed = paired_difference([0.6, 0.5, 0.7, 0.4], [0.5, 0.6, 0.6, 0.5])
    assert not mixed["significant"] and mixed["ci_low"] < 0 < mixed["ci_high"]
    nan = paired_difference([float("nan"), 0.6, 0.7], [0.5, 0.5, 0.5])
    assert nan["n"] == 2
    with pytest.raises(ValueError, match="alike"):
        paired_difference([0.1, 0.2], [0.1])


def test_path_scores_are_accuracy_and_mean_probability_of_the_true_class(split):
    from pada_nas.evaluate import evaluate_paths, path_scores
    from pada_nas.nb201 import Supernet

    torch.manual_seed(0)
    model = Supernet(4, 1, split.num_classes, split.in_channels)
    paths = fake_sets()["random"][0][:3]
    x, y = split.x_test[:70], split.y_test[:70]  # 70 in batches of 32: 3 of 23-24 images
    scores = path_scores(model, paths, x, y, batch_size=32)
    assert scores["accuracy"] == evaluate_paths(model, paths, x, y, batch_size=32)
    model.eval()
    with torch.no_grad():
        for path, acc, pc in zip(paths, scores["accuracy"], scores["p_correct"]):
            logits = torch.cat([model(xb, path) for xb in x.tensor_split(3)])
            p = logits.softmax(1)[torch.arange(70), y]
            assert pc == pytest.approx(float(p.double().mean()), rel=1e-6)
            assert acc == pytest.approx(float((logits.argmax(1) == y).double().mean()))


@pytest.mark.parametrize("rank_by", ["accuracy", "p_correct"])
def test_final_ranking_follows_rank_by(rank_by, split):
    from pada_nas.evaluate import rank_scores

    cfg = make_config("small", **dict(TINY, epochs=2, rank_by=rank_by))
    rec = train("spos", cfg, 0, fake_sets(), split, progress=False)
    key = {"accuracy": "supernet_acc", "p_correct": "supernet_p_correct"}[rank_by]
    for name, (_, truth) in fake_sets().items():
        final = rec["final"][name]
        expected = rank_scores(final[key], truth)
        assert final["rank_by"] == rank_by
        assert final["kt"] == expected["kt"] and final["p_top5"] == expected["p_top5"]
        assert final["by_score"][rank_by] == expected
        assert set(final["by_score"]) == {"accuracy", "p_correct"}
        assert all(0 < v < 1 for v in final["supernet_p_correct"])


def test_rank_by_is_checked():
    from pada_nas.config import Config

    with pytest.raises(ValueError, match="rank_by must be one of"):
        make_config("small", rank_by="loss")
    # a Config made directly is checked too, before any training
    with pytest.raises(ValueError, match="rank_by must be one of"):
        Config(rank_by="loss")


def test_distorted_preset_matches_its_ground_truth():
    from pada_nas import experiment

    path = experiment.default_ground_truth("distorted")
    assert path.name == "digits_distorted_c16.json"
    _, gt = experiment.load_ground_truth(path)
    cfg = make_config("distorted")
    for key, value in experiment.config_from_ground_truth(gt).items():
        assert getattr(cfg, key) == value, key
    # the supernets do their arithmetic as the standalone networks did
    assert (cfg.amp, cfg.channels_last) == (gt["config"]["amp"], gt["config"]["channels_last"])
    assert experiment.default_ground_truth("small").name == "digits.json"


def test_training_is_deterministic_under_a_seed(split):
    cfg = make_config("small", **dict(TINY, epochs=2))
    runs = [train("pada", cfg, 5, fake_sets(), split, progress=False) for _ in range(2)]
    assert runs[0]["loss"] == runs[1]["loss"]
    assert runs[0]["gv"] == runs[1]["gv"]
    assert runs[0]["final"] == runs[1]["final"]
    other = train("pada", cfg, 6, fake_sets(), split, progress=False)
    assert other["loss"] != runs[0]["loss"]


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_command_line_writes_documented_outputs(tmp_path, capsys, quick):
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
    args += ["--quick"] if quick else []
    cli.main(args + ["--ground-truth", str(gt_file), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    printed = captured.out
    # The quick job says what it is: a smoke test, not evidence about the samplers.
    assert ("a smoke test" in captured.err) == quick
    assert "| DA | PA | KT (sub64) | P@Top5% (sub64) | KT (random)" in printed
    payload = json.loads((out / "results.json").read_text())
    for key in ("command", "config", "samplers", "seeds", "ground_truth", "summary", "table"):
        assert key in payload
    assert payload["config"]["channels"] == 4 and payload["config"]["epochs"] == 2
    assert payload["seeds"] == [0, 1] and len(payload["runs"]) == 4
    row = payload["summary"]["pada"]
    for key in ("sub64_kt", "sub64_p_top5", "random_kt", "random_p_top5", "mean_gv"):
        assert len(row[key]) == 2 and np.isfinite(row[key][0])
    for name in ("table.md", "kt.png", "gv.png", "entropy.png"):
        assert (out / name).stat().st_size > 0
    # PA&DA paired with SPOS by seed: one difference per set and metric, and its table.
    assert "| vs SPOS | ΔKT (sub64)" in printed
    # and the same by the other ranking score (rank_by is accuracy here)
    assert "Ranked by p_correct instead:" in printed
    by_score = payload["paired_vs_spos_by_score"]
    assert by_score["accuracy"] == payload["paired_vs_spos"]
    assert by_score["p_correct"]["pada"]["random"]["kt"]["n"] == 2
    d = payload["paired_vs_spos"]["pada"]["random"]["kt"]
    assert d["n"] == 2 and d["ci_low"] <= d["mean"] <= d["ci_high"]
    runs = {(r["sampler"], r["seed"]): r for r in payload["runs"]}
    expected = np.mean(
        [
            runs["pada", s]["final"]["random"]["kt"] - runs["spos", s]["final"]["random"]["kt"]
            for s in (0, 1)
        ]
    )
    assert d["mean"] == pytest.approx(expected)


def test_two_processes_give_the_runs_of_one(tmp_path):
    from pada_nas import experiment

    cfg = make_config("small", **dict(TINY, epochs=1))
    jobs = [("spos", 0), ("pada", 0), ("pada", 1)]
    sets = fake_sets()
    one = experiment.train_all(cfg, jobs, sets, False, "./data", False, processes=1)
    two = experiment.train_all(cfg, jobs, sets, False, "./data", False, processes=2)
    assert [(r["sampler"], r["seed"]) for r in two] == jobs
    for a, b in zip(one, two):
        assert a["loss"] == b["loss"] and a["final"] == b["final"]


# -- devices and mixed precision ---------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_pada_trains_on_each_device_with_and_without_amp(device, amp, split):
    cfg = make_config("small", **dict(TINY, device=device, amp=amp))
    rec = train("pada", cfg, seed=0, eval_sets=fake_sets(), split=split, progress=False)
    assert all(np.isfinite(rec["loss"])) and rec["loss"][-1] < rec["loss"][0]
    assert rec["config"]["device"] == device and rec["config"]["amp"] == amp
    assert all(0 <= a <= 1 for a in rec["final"]["random"]["supernet_acc"])
    assert rec["data_scored"] > 100 and rec["path_scores"][3] > 0


def test_channels_last_supernet_steps_like_the_nchw_one(split):
    """Config.channels_last changes the memory format, not the maths: one PA step on the same
    batch gives the NCHW run's loss and path scores (the gradient norms that PathSampler
    reads from channels_last gradients) to float32 rounding. (Over an epoch the two runs
    drift apart: paths whose BatchNorm sees a near-constant input amplify rounding.)"""
    from pada_nas.train import Run

    runs = [
        Run("pa", make_config("small", **dict(TINY, channels_last=cl)), 0, split)
        for cl in (False, True)
    ]
    conv = runs[1].model.layers[0].edges[0][3][1].weight  # a 3x3 conv, 4 channels in
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x, y, idx = next(iter(runs[0].loader))
    losses = []
    for run in runs:
        run.set_epoch(0)
        losses.append(run.step(x, y, idx)[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    nchw, cl = runs[0].path_sampler.scores, runs[1].path_sampler.scores
    assert (nchw > 0).sum() > 0
    torch.testing.assert_close(cl, nchw, rtol=1e-5, atol=1e-7)


@requires_cuda
@pytest.mark.parametrize("kind", ["spos", "pada"])
def test_cuda_training_follows_the_cpu_run(kind, split):
    """Two epochs, in which the paper's tau and delta are 0: the same paths and batches
    on both devices, so the losses agree to float32 rounding (TF32 off)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        recs = {
            d: train(
                kind,
                make_config("small", **dict(TINY, epochs=2, device=d)),
                seed=1,
                eval_sets=fake_sets(),
                split=split,
                progress=False,
            )
            for d in ("cpu", "cuda")
        }
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert recs["cuda"]["op_counts"] == recs["cpu"]["op_counts"]
    np.testing.assert_allclose(recs["cuda"]["loss"], recs["cpu"]["loss"], rtol=1e-3)
    np.testing.assert_allclose(recs["cuda"]["gv"], recs["cpu"]["gv"], rtol=1e-2)


# -- CIFAR-10 from torchvision's on-disk format, offline ----------------------------------


def write_fake_cifar10(root, per_batch=6, test=5, seed=0):
    """A tiny cifar-10-batches-py folder in torchvision's format (pickled dicts of
    uint8 rows [n, 3072] in CHW order and label lists; batches.meta has the names).
    Its md5 sums are not CIFAR-10's, as a partial or local copy's would not be."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, datasets.CIFAR10_FOLDER)
    os.makedirs(folder)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        entry = {
            "batch_label": name,
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        batches[name] = entry
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
    return batches


@pytest.fixture
def no_torchvision(monkeypatch):
    """Makes `import torchvision` fail: whatever runs cannot reach its downloader."""
    monkeypatch.setitem(sys.modules, "torchvision", None)


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_reads_the_folder_without_torchvision_or_network(
    tmp_path, no_torchvision, download
):
    batches = write_fake_cifar10(tmp_path)
    split = datasets.cifar10(str(tmp_path), download=download)  # files present: never downloads
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    raw = np.concatenate([batches[b]["data"] for b in train_names]).reshape(-1, 3, 32, 32)
    labels = sum((batches[b]["labels"] for b in train_names), [])
    assert split.x_train.shape == (30, 3, 32, 32) and split.x_test.shape == (5, 3, 32, 32)
    assert split.y_train.tolist() == labels
    assert split.y_test.tolist() == batches["test_batch"]["labels"]
    assert split.num_classes == 10 and split.in_channels == 3 and split.name == "cifar10"
    # per-channel standardisation with the training statistics, pixels in CHW order
    x = torch.from_numpy(raw).float() / 255.0
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    torch.testing.assert_close(split.x_train, (x - mean) / std)
    test = torch.from_numpy(batches["test_batch"]["data"].reshape(-1, 3, 32, 32)).float() / 255.0
    torch.testing.assert_close(split.x_test, (test - mean) / std)


def test_cifar10_missing_files_without_download_name_the_folder(tmp_path, no_torchvision):
    write_fake_cifar10(tmp_path)
    os.remove(tmp_path / datasets.CIFAR10_FOLDER / "data_batch_3")
    folder = os.path.abspath(tmp_path / datasets.CIFAR10_FOLDER)
    with pytest.raises(FileNotFoundError, match="data_batch_3") as info:
        datasets.cifar10(str(tmp_path), download=False)
    assert folder in str(info.value)
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="test_batch"):
        datasets.cifar10(str(empty), download=False)
    # allowed to download, the missing files need torchvision: a clear error, no traceback soup
    with pytest.raises(RuntimeError, match="torchvision"):
        datasets.cifar10(str(empty), download=True)


def test_command_line_no_download_exits_naming_the_folder(tmp_path, no_torchvision):
    args = ["--preset", "authors", "--no-download", "--data-root", str(tmp_path / "nowhere")]
    args += ["--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert os.path.abspath(tmp_path / "nowhere" / datasets.CIFAR10_FOLDER) in str(info.value.code)


def test_cifar10_reader_matches_torchvision(tmp_path, monkeypatch):
    """The reader gives torchvision's CIFAR10 images and labels (its md5 checks, which
    the fake folder cannot pass, switched off for the comparison)."""
    torchvision = pytest.importorskip(
        "torchvision", reason="torchvision does not import with this torch (CPU build)"
    )
    import torchvision.datasets.cifar as tv_cifar

    write_fake_cifar10(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    tv = [torchvision.datasets.CIFAR10(str(tmp_path), train=t, download=False) for t in (1, 0)]
    split = datasets.cifar10(str(tmp_path), download=False)
    xs = [torch.tensor(t.data).permute(0, 3, 1, 2).float() / 255.0 for t in tv]
    mean, std = xs[0].mean((0, 2, 3), keepdim=True), xs[0].std((0, 2, 3), keepdim=True)
    torch.testing.assert_close(split.x_train, (xs[0] - mean) / std)
    torch.testing.assert_close(split.x_test, (xs[1] - mean) / std)
    assert split.y_train.tolist() == tv[0].targets and split.y_test.tolist() == tv[1].targets


def test_digits_distorted_is_deterministic_and_keeps_labels():
    from pada_nas import data
    from sklearn.datasets import load_digits

    a = data.digits_distorted(train_size=300, test_images=200, seed=3)
    b = data.digits_distorted(train_size=300, test_images=200, seed=3)
    c = data.digits_distorted(train_size=300, test_images=200, seed=4)
    assert a.x_train.shape == (300, 1, 16, 16) and a.x_test.shape == (200, 1, 16, 16)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)
    # Image i is a distorted copy of source i mod (sources): its label, untouched.
    labels = torch.tensor(load_digits().target)
    train_src, test_src = data.digit_sources()
    assert torch.equal(a.y_train, labels[train_src[torch.arange(300) % len(train_src)]])
    assert torch.equal(a.y_test, labels[test_src[torch.arange(200) % len(test_src)]])
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-5


def test_digits_distorted_test_sources_are_disjoint_from_training_ones():
    from pada_nas import data

    train_src, test_src = data.digit_sources(test_sources=597, split_seed=0)
    assert len(train_src) == 1200 and len(test_src) == 597
    assert not set(train_src.tolist()) & set(test_src.tolist())
    assert sorted(train_src.tolist() + test_src.tolist()) == list(range(1797))


def test_distort_moves_and_noises_each_image_by_its_own_draw():
    from pada_nas import data

    img = torch.zeros(2, 1, 8, 8)
    img[:, :, 2:6, 3:5] = 1.0  # the same digit-like bar twice
    g = torch.Generator().manual_seed(0)
    clean = data.distort(img, 0.0, g)
    assert clean.shape == (2, 1, 16, 16)
    assert not torch.allclose(clean[0], clean[1])  # different affine draws
    noisy = data.distort(img, 0.5, torch.Generator().manual_seed(0))
    assert 0.3 < float((noisy - clean).std()) < 0.7  # the same affine draws, plus noise
