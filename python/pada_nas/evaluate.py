"""Evaluating paths with the inherited supernet weights."""

import torch

from .metrics import kendall_tau, precision_at_top


@torch.no_grad()
def evaluate_paths(model, paths, x, y, batch_size: int) -> list:
    """Test accuracy of every path in `paths` with the supernet's weights.

    BatchNorm normalises with batch statistics, so every path sees the same
    batches of exactly `batch_size` images (a smaller split is one batch; the
    ragged tail of a larger one is dropped): the accuracies stay comparable.
    """
    was_training = model.training
    model.eval()  # BN keeps no running stats: it uses batch statistics in eval mode too
    n = len(y)
    b = min(batch_size, n)
    batches = [(x[i : i + b], y[i : i + b]) for i in range(0, n - b + 1, b)]
    counted = sum(len(yb) for _, yb in batches)
    accs = []
    for path in paths:
        correct = 0
        for xb, yb in batches:
            correct += int((model(xb, list(path)).argmax(1) == yb).sum())
        accs.append(correct / counted)
    model.train(was_training)
    return accs


def rank_scores(pred, truth) -> dict:
    return {"kt": kendall_tau(pred, truth), "p_top5": precision_at_top(pred, truth)}
