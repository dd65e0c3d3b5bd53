"""Datasets for the experiments.

The embedded default works offline on a fresh machine: the 1,797 handwritten
digits (8x8, 10 classes) that ship with scikit-learn, real images, split once
by a fixed permutation into a training and a test set. CIFAR-10 is read from
torchvision's on-disk format (``<root>/cifar-10-batches-py/``), downloaded by
torchvision only when the files are missing and downloading is allowed.
"""

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Split:
    x_train: torch.Tensor  # [N, C, H, W] float32, normalised
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]


def digits(train_size: int = 1000, split_seed: int = 0) -> Split:
    """sklearn's digits, scaled to [0, 1] and standardised with training statistics.

    Args:
        train_size: images in the training split (the rest, at least 597, are
            the test split). A smaller training split makes the task harder.
        split_seed: seed of the fixed permutation that splits the images.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    if not 10 <= train_size <= len(y) - 597:
        raise ValueError(f"train_size must be in [10, {len(y) - 597}], got {train_size}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
    train, test = order[:train_size], order[train_size:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return Split(x[train], y[train], x[test], y[test], 10, "digits")


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_FILES = CIFAR10_TRAIN + CIFAR10_TEST + ("batches.meta",)


def _read_cifar_batches(folder: str, names) -> tuple:
    """Images [n, 3, 32, 32] uint8 and labels [n] of torchvision's pickled batches."""
    images, labels = [], []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def cifar10(root: str = "./data", download: bool = True) -> Split:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (torchvision's format), per-channel
    standardised with training statistics.

    Files that are present are read as they are, without torchvision's md5 check
    (which re-downloads on a mismatch), so nothing touches the network once the
    data is there. Missing files are downloaded through torchvision when
    `download` is true; otherwise FileNotFoundError names the folder.
    """
    folder = os.path.join(root, CIFAR10_FOLDER)
    missing = [f for f in CIFAR10_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing and not download:
        raise FileNotFoundError(
            f"CIFAR-10 is not in {os.path.abspath(folder)} (missing: {', '.join(missing)}); "
            "put torchvision's cifar-10-batches-py there, or allow the download "
            "(drop --no-download)"
        )
    if missing:
        try:
            import torchvision
        except Exception as e:  # torchvision can fail to import against another torch
            raise RuntimeError(
                f"CIFAR-10 is not in {os.path.abspath(folder)} and downloading it needs a "
                f"working torchvision: {e}"
            ) from e
        torchvision.datasets.CIFAR10(root, train=True, download=True)
    x_train, y_train = _read_cifar_batches(folder, CIFAR10_TRAIN)
    x_test, y_test = _read_cifar_batches(folder, CIFAR10_TEST)
    xs = [x_train.float() / 255.0, x_test.float() / 255.0]
    mean = xs[0].mean((0, 2, 3), keepdim=True)
    std = xs[0].std((0, 2, 3), keepdim=True)
    return Split((xs[0] - mean) / std, y_train, (xs[1] - mean) / std, y_test, 10, "cifar10")


def load(name: str, **kwargs) -> Split:
    if name == "digits":
        return digits(**kwargs)
    if name == "cifar10":
        return cifar10(**kwargs)
    raise ValueError(f"unknown dataset {name!r}: use 'digits' or 'cifar10'")
