"""Evaluating paths with the inherited supernet weights."""

import torch

from .metrics import kendall_tau, precision_at_top


@torch.no_grad()
def evaluate_paths(model, paths, x, y, batch_size: int) -> list:
    """Test accuracy of every path in `paths` with the supernet's weights.

    BatchNorm normalises with batch statistics, so every path sees the same
    batches in the same order: the split is cut into ``ceil(n / batch_size)``
    consecutive batches of near-equal size (they differ by at most one image),
    so that no small ragged tail gets noisy statistics and no image is dropped.
    """
    was_training = model.training
    model.eval()  # BN keeps no running stats: it uses batch statistics in eval mode too
    pieces = -(-len(y) // batch_size)
    batches = list(zip(x.tensor_split(pieces), y.tensor_split(pieces)))
    counted = len(y)
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
