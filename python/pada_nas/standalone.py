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
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .data import Split
from .nb201 import Supernet


@dataclass(frozen=True)
class TrainConfig:
    channels: int = 4
    cells: int = 1
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0  # as the authors' supernet training
    eval_batch_size: int = 256

    def as_dict(self) -> dict:
        return asdict(self)


def build(path, split: Split, cfg: TrainConfig, seed: int) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(cfg.channels, cfg.cells, split.num_classes, split.in_channels)


@torch.no_grad()
def evaluate(model, path, x, y, batch_size: int = 256) -> float:
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        correct += (model(xb, path).argmax(1) == yb).sum().item()
    return correct / len(y)


def train_path(path, split: Split, cfg: TrainConfig, seed: int) -> float:
    """Train ``path`` from scratch with ``seed`` (initialisation and batch order); test accuracy."""
    path = [int(op) for op in path]
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
            loss = F.cross_entropy(model(split.x_train[idx], path), split.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.grad is not None], cfg.grad_clip
                )
            opt.step()
    return evaluate(model, path, split.x_test, split.y_test, cfg.eval_batch_size)
