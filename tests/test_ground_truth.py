"""The committed standalone ground truth and the trainer that made it."""

import itertools
import json
import os

import pytest
from pada_nas.ground_truth import CONFIG_KEYS, DISTORTED_KEYS, NUMERICS_KEYS

GT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "python",
    "ground_truth",
    "digits.json",
)


@pytest.fixture(scope="module")
def gt():
    with open(GT) as f:
        return json.load(f)


def test_keys(gt):
    assert set(gt) == {"dataset", "command", "seeds", "config", "results", "seed_kendall_tau"}
    assert gt["dataset"] == "digits"
    assert "pada_nas.ground_truth" in gt["command"]
    assert len(gt["seeds"]) >= 2 and len(set(gt["seeds"])) == len(gt["seeds"])
    assert set(gt["config"]) == set(CONFIG_KEYS)
    assert set(gt["seed_kendall_tau"]) == {"sub64", "random"}
    for r in gt["results"]:
        assert set(r) == {"path", "set", "test_acc"}
        assert r["set"] in ("sub64", "random")


def test_sub64_covers_the_subspace(gt):
    paths = [tuple(r["path"]) for r in gt["results"] if r["set"] == "sub64"]
    assert len(paths) == 64
    assert set(paths) == set(itertools.product((2, 3), repeat=6))


def test_random_sample(gt):
    from pada_nas.ground_truth import random_paths

    paths = [tuple(r["path"]) for r in gt["results"] if r["set"] == "random"]
    assert len(paths) >= 100 and len(set(paths)) == len(paths)
    assert all(len(p) == 6 and all(0 <= op < 5 for op in p) for p in paths)
    # The documented seeded sample, in order (a shorter file is a prefix of it).
    expected = random_paths(len(paths), gt["config"]["sample_seed"])
    assert [list(p) for p in paths] == expected


def test_accuracies(gt):
    for r in gt["results"]:
        assert len(r["test_acc"]) == len(gt["seeds"]) >= 2
        assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in r["test_acc"])
    for tau in gt["seed_kendall_tau"].values():
        assert tau is not None and -1.0 <= tau <= 1.0


def test_standalone_reproduces_itself():
    import torch
    from pada_nas.data import digits
    from pada_nas.standalone import standalone_config, train_path

    torch.set_num_threads(1)
    split = digits(train_size=64, split_seed=0)
    cfg = standalone_config(channels=4, cells=1, epochs=1, batch_size=32)
    path = [3, 2, 0, 1, 4, 3]
    a = train_path(path, split, cfg, seed=0)
    assert a == train_path(path, split, cfg, seed=0)
    assert 0.0 <= a <= 1.0


def test_standalone_train_calls_after_step_with_the_trained_weights():
    """standalone.train is train_path's training: after_step sees every optimiser step (a
    one-sample batch counts but takes none) and the weights it left."""
    import torch
    from pada_nas.data import digits
    from pada_nas.evaluate import evaluate_paths
    from pada_nas.standalone import standalone_config, train, train_path

    torch.set_num_threads(1)
    split = digits(train_size=65, split_seed=0)  # batches of 32, 32 and 1
    cfg = standalone_config(channels=4, cells=1, epochs=2, batch_size=32)
    path = [3, 2, 0, 1, 4, 3]
    seen = []

    def after_step(model, step, total):
        seen.append((step, total, [p.detach().clone() for p in model.parameters()]))

    model = train(path, split, cfg, seed=0, after_step=after_step)
    assert [(step, total) for step, total, _ in seen] == [(1, 6), (2, 6), (4, 6), (5, 6)]
    for before, after in zip(seen[-1][2], model.parameters()):
        assert torch.equal(before, after)
    assert not torch.equal(seen[0][2][0], seen[-1][2][0])  # the stem conv trained on
    # train_path is that training, then the evaluation
    x, y = split.x_test, split.y_test
    acc = evaluate_paths(model, [path], x, y, cfg.eval_batch, ragged_tail=True)
    assert acc == [train_path(path, split, cfg, seed=0)]


def test_distorted_ground_truth_is_the_same_with_two_processes(tmp_path):
    from pada_nas import experiment
    from pada_nas.ground_truth import main

    args = ["--dataset", "digits_distorted", "--train-size", "64", "--test-images", "48"]
    args += ["--epochs", "1", "--batch-size", "32", "--pilot", "2", "--seeds", "0", "1"]
    docs = []
    for processes in (1, 2):
        out = tmp_path / f"gt{processes}.json"
        main(args + ["--out", str(out), "--processes", str(processes)])
        docs.append(json.loads(out.read_text()))
    assert docs[0]["results"] == docs[1]["results"] and len(docs[0]["results"]) == 4
    config = docs[0]["config"]
    assert docs[0]["dataset"] == "digits_distorted"
    assert set(config) == set(CONFIG_KEYS + DISTORTED_KEYS)
    # The supernets are trained on the split the ground truth names.
    overrides = experiment.config_from_ground_truth(docs[0])
    assert overrides["dataset"] == "digits_distorted" and overrides["test_images"] == 48
    assert overrides["sigma"] == 0.5 and overrides["train_size"] == 64


def test_a_resumed_ground_truth_refuses_another_config(tmp_path):
    from pada_nas.ground_truth import main

    out = str(tmp_path / "gt.json")
    args = ["--dataset", "digits_distorted", "--train-size", "32", "--test-images", "16"]
    args += ["--epochs", "1", "--pilot", "1", "--seeds", "0", "--sets", "random"]
    main(args + ["--out", out])
    with pytest.raises(SystemExit, match="another config"):
        main(args + ["--out", out, "--sigma", "0.3"])


def test_numerics_options_are_recorded_and_checked_on_resume(tmp_path):
    """--amp / --channels-last go into the file's config (and only then), and a run resumed
    without them is refused: they change the accuracies."""
    from pada_nas.ground_truth import main

    out = str(tmp_path / "gt.json")
    args = ["--dataset", "digits_distorted", "--train-size", "32", "--test-images", "16"]
    args += ["--epochs", "1", "--pilot", "1", "--seeds", "0", "--sets", "random"]
    main(args + ["--out", out, "--amp", "bf16", "--channels-last"])
    with open(out) as f:
        config = json.load(f)["config"]
    assert set(config) == set(CONFIG_KEYS + DISTORTED_KEYS + NUMERICS_KEYS)
    assert config["amp"] == "bf16" and config["channels_last"] is True
    with pytest.raises(SystemExit, match="another config"):
        main(args + ["--out", out])


def test_standalone_numerics_options_reach_the_model(monkeypatch):
    """channels_last puts the convolutions' weights in that format, amp runs the forward in
    bf16 (the classifier's output is bf16 inside train_path), in training and evaluation."""
    import torch
    from pada_nas import standalone
    from pada_nas.data import digits_distorted

    built, dtypes = [], []

    def build(*a, **k):
        model = real_build(*a, **k)
        model.classifier.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        built.append(model)
        return model

    real_build = standalone.build
    monkeypatch.setattr(standalone, "build", build)
    torch.set_num_threads(1)
    split = digits_distorted(train_size=32, test_images=16)
    path = [3, 2, 0, 1, 4, 3]
    for amp, channels_last in ((None, False), ("bf16", True)):
        built.clear(), dtypes.clear()
        cfg = standalone.standalone_config(
            channels=4, cells=1, epochs=1, batch_size=16, amp=amp, channels_last=channels_last
        )
        acc = standalone.train_path(path, split, cfg, seed=0)
        assert 0.0 <= acc <= 1.0
        want = torch.bfloat16 if amp else torch.float32
        assert dtypes and all(d == want for d in dtypes)  # 2 training steps + 1 eval batch
        assert len(dtypes) == 3
        weight = built[0].layers[0].edges[0][3][1].weight  # a 3x3 conv, 4 channels in
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
