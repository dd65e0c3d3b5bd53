"""How much of the seed-to-seed noise of a path's test accuracy is the finite test set's?

Trains 8 sub64 paths (random.Random(1).sample) with seeds 0 and 1, keeps which test images
each network gets right, and compares the two seeds' accuracy difference on the two halves
of the test split (test sources of even and odd index): the spread of half-A minus half-B
differences, halved, is the evaluation's share of the full-split difference. Also a
bootstrap over test sources and the binomial (independent images) figure.

    python python/ground_truth/pilots_distorted/round2/eval_noise.py CHANNELS TEST_IMAGES

16 channels run in bf16 autocast and channels_last, as the c16 ground truth; others in
float32 NCHW, as the first one. (The figures in python/ground_truth/README.md came from
an earlier, less tidy form of this computation; this script prints the 8-channel,
12,000-image ones exactly.)
"""

import multiprocessing
import os
import random
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from pada_nas import standalone  # noqa: E402
from pada_nas.config import autocast  # noqa: E402
from pada_nas.data import digits_distorted  # noqa: E402
from pada_nas.nb201 import all_paths  # noqa: E402

CHANNELS, TEST_IMAGES = int(sys.argv[1]), int(sys.argv[2])
WIDE = CHANNELS == 16
CFG = standalone.standalone_config(
    channels=CHANNELS,
    cells=1,
    epochs=2,
    batch_size=128,
    lr=0.05,
    amp="bf16" if WIDE else None,
    channels_last=WIDE,
)
TEST_SOURCES = 597


def correct_per_image(model, path, x, y):
    """train_path's evaluation (the same batches and autocast), one bool per image."""
    model.eval()
    with torch.no_grad(), autocast(CFG):
        batches = zip(x.split(CFG.eval_batch), y.split(CFG.eval_batch))
        return torch.cat([model(xb, path).argmax(1) == yb for xb, yb in batches]).numpy()


def job(args):
    path, seed = args
    torch.set_num_threads(1)
    split = digits_distorted(14_000, TEST_IMAGES, 0.5, split_seed=0)
    model = standalone.train(path, split, CFG, seed)
    hits = correct_per_image(model, path, split.x_test, split.y_test)
    return float(hits.mean()), hits


def main():
    sub64 = all_paths([2, 3])
    paths = [sub64[i] for i in sorted(random.Random(1).sample(range(64), 8))]
    jobs = [(p, s) for p in paths for s in (0, 1)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        res = pool.map(job, jobs)
    hits = np.array([r[1] for r in res], dtype=float).reshape(8, 2, -1)  # path, seed, image
    src = np.arange(hits.shape[2]) % TEST_SOURCES
    half = src % 2 == 0
    acc_a, acc_b, acc = hits[:, :, half].mean(2), hits[:, :, ~half].mean(2), hits.mean(2)
    print("acc", acc.round(4).tolist())
    d_a, d_b, d = (a[:, 0] - a[:, 1] for a in (acc_a, acc_b, acc))
    print("seed diff full std", d.std(ddof=1), "halves corr", np.corrcoef(d_a, d_b)[0, 1])
    print("eval-noise std of full-set seed diff ~", (d_a - d_b).std(ddof=1) / 2)
    per_src = np.stack([hits[:, :, src == k].mean(2) for k in range(TEST_SOURCES)], axis=2)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(300):
        m = per_src[:, :, rng.integers(0, TEST_SOURCES, TEST_SOURCES)].mean(2)
        boots.append(m[:, 0] - m[:, 1])
    print("bootstrap-over-sources std of seed diff", np.std(boots, axis=0).round(4).tolist())
    iid = np.sqrt((hits[:, 0] != hits[:, 1]).mean(1) / hits.shape[2])
    print("per-image (iid) std", iid.round(4).tolist())


if __name__ == "__main__":
    main()
