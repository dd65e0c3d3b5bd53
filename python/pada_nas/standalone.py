"""Standalone training of one path: the ground truth a supernet's ranking is judged against.

A ``Supernet`` run with one fixed path is that path's standalone network: the ops off the path
take no part in the forward pass, so they get no gradient and plain SGD leaves them untouched
(their parameters only cost memory). Training is plain SGD with momentum and a cosine learning
rate over mini-batches of the in-memory tensors; the same (path, seed, config) gives the same
accuracy on one thread.

Evaluation: BatchNorm keeps no running statistics (as in the PA&DA authors' code), so the test
accuracy uses batch statistics. The test split is evaluated in its fixed order in batches of
``eval_batch_size`` (256 by default), so the figure depends on that batch size too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import Config, autocast, make_supernet
from .data import Split
from .evaluate import evaluate_paths
from .nb201 import Supernet

# Standalone training's own defaults (the supernets' are Config's).
STANDALONE = dict(channels=4, cells=1, epochs=6, batch_size=64, lr=0.1, weight_decay=5e-4)


def standalone_config(**overrides) -> Config:
    """A Config with the standalone defaults, then `overrides`."""
    return Config(**{**STANDALONE, **overrides})


def build(path, split: Split, cfg: Config, seed: int) -> Supernet:
    torch.manual_seed(seed)
    return make_supernet(cfg, split)


def train(path, split: Split, cfg: Config, seed: int, after_step=None) -> Supernet:
    """``path`` trained from scratch with ``seed`` (initialisation and batch order).
    ``after_step(model, step, total)``, when given, runs after each optimiser step (step counts
    from 1 to total, the skipped one-sample batches included): a pilot that averages the
    weights over the end of training reads them there."""
    model = build(path, split, cfg, seed)
    model.train()
    # Off-path parameters never get a .grad, so SGD skips them (no weight decay either).
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=False,
    )
    n = len(split.y_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    # Batch order from its own generator so it does not depend on how many draws init made.
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    step = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for idx in order.split(cfg.batch_size):
            # Cosine per step (to 0 at the end): with ~10 epochs a per-epoch step is too coarse.
            for g in opt.param_groups:
                g["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * step / total))
            step += 1
            if len(idx) < 2:  # batch-statistics BN cannot normalise a single sample
                continue
            with autocast(cfg):
                loss = F.cross_entropy(model(split.x_train[idx], path), split.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.grad is not None], cfg.grad_clip
                )
            opt.step()
            if after_step is not None:
                after_step(model, step, total)
    return model


def train_path(path, split: Split, cfg: Config, seed: int) -> float:
    """Train ``path`` from scratch with ``seed`` (initialisation and batch order); test accuracy."""
    path = [int(op) for op in path]
    model = train(path, split, cfg, seed)
    x, y = split.x_test, split.y_test
    (acc,) = evaluate_paths(model, [path], x, y, cfg.eval_batch, autocast(cfg), ragged_tail=True)
    return acc
