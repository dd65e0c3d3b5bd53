"""The committed standalone ground truth and the trainer that made it."""

import itertools
import json
import os

import pytest

GT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "python",
    "ground_truth",
    "digits.json",
)
CONFIG_KEYS = {
    "train_size",
    "split_seed",
    "channels",
    "cells",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "sample_seed",
}


@pytest.fixture(scope="module")
def gt():
    with open(GT) as f:
        return json.load(f)


def test_keys(gt):
    assert set(gt) == {"dataset", "command", "seeds", "config", "results", "seed_kendall_tau"}
    assert gt["dataset"] == "digits"
    assert "pada_nas.ground_truth" in gt["command"]
    assert len(gt["seeds"]) >= 2 and len(set(gt["seeds"])) == len(gt["seeds"])
    assert set(gt["config"]) == CONFIG_KEYS
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
