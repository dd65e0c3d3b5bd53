"""Evaluating paths with the inherited supernet weights."""

import contextlib

import torch

from .metrics import kendall_tau, precision_at_top

# What a path can be ranked by (Config.rank_by): its test accuracy, or the mean probability
# the network gives the right class (a smooth accuracy: the accuracy expected if each
# prediction were drawn from the softmax). Both come from the same forward passes.
RANK_SCORES = ("accuracy", "p_correct")


def evaluate_paths(
    model, paths, x, y, batch_size: int, autocast=None, ragged_tail: bool = False
) -> list:
    """Test accuracy of every path in `paths` with the supernet's weights (see
    :func:`path_scores`, which this calls)."""
    return path_scores(model, paths, x, y, batch_size, autocast, ragged_tail)["accuracy"]


@torch.no_grad()
def path_scores(
    model, paths, x, y, batch_size: int, autocast=None, ragged_tail: bool = False
) -> dict:
    """``{score: [one value per path]}`` for each of RANK_SCORES, with the supernet's weights.

    Runs on the model's device (the split is copied there once) under `autocast`
    (a context manager, e.g. ``torch.autocast``; default none), and reads the
    counts back once for all paths.

    BatchNorm normalises with batch statistics, so every path sees the same
    batches in the same order: the split is cut into ``ceil(n / batch_size)``
    consecutive batches of near-equal size (they differ by at most one image),
    so that no small ragged tail gets noisy statistics and no image is dropped.
    ``ragged_tail=True`` cuts consecutive batches of `batch_size` and a shorter
    last one instead (how the committed standalone ground truth was evaluated).
    """
    was_training = model.training
    model.eval()  # BN keeps no running stats: it uses batch statistics in eval mode too
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    if ragged_tail:
        batches = list(zip(x.split(batch_size), y.split(batch_size)))
    else:
        pieces = -(-len(y) // batch_size)
        batches = list(zip(x.tensor_split(pieces), y.tensor_split(pieces)))
    counted = len(y)
    corrects, p_correct = [], []
    with autocast if autocast is not None else contextlib.nullcontext():
        for path in paths:
            correct = torch.zeros((), dtype=torch.int64, device=device)
            p_sum = torch.zeros((), dtype=torch.float64, device=device)
            for xb, yb in batches:
                logits = model(xb, list(path))
                correct += (logits.argmax(1) == yb).sum()
                p_sum += logits.float().softmax(1).gather(1, yb[:, None]).sum(dtype=torch.float64)
            corrects.append(correct)
            p_correct.append(p_sum)
    model.train(was_training)
    if not corrects:
        return {name: [] for name in RANK_SCORES}
    return {
        "accuracy": [c / counted for c in torch.stack(corrects).tolist()],
        "p_correct": [p / counted for p in torch.stack(p_correct).tolist()],
    }


def rank_scores(pred, truth) -> dict:
    return {"kt": kendall_tau(pred, truth), "p_top5": precision_at_top(pred, truth)}
