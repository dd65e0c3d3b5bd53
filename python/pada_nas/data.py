"""Datasets for the experiments.

The embedded default works offline on a fresh machine: the 1,797 handwritten
digits (8x8, 10 classes) that ship with scikit-learn, real images, split once
by a fixed permutation into a training and a test set. CIFAR-10 comes through
torchvision where it is installed and the data can be downloaded.
"""

from dataclasses import dataclass

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


def cifar10(root: str = "./data", download: bool = True) -> Split:  # pragma: no cover
    """CIFAR-10 through torchvision (not installed on CPU-only machines here)."""
    try:
        import torchvision
    except Exception as e:  # torchvision can fail to import against a CPU torch
        raise RuntimeError(f"CIFAR-10 needs a working torchvision: {e}") from e
    sets = [torchvision.datasets.CIFAR10(root, train=t, download=download) for t in (True, False)]
    xs = [torch.tensor(s.data).permute(0, 3, 1, 2).float() / 255.0 for s in sets]
    mean = xs[0].mean((0, 2, 3), keepdim=True)
    std = xs[0].std((0, 2, 3), keepdim=True)
    ys = [torch.tensor(s.targets, dtype=torch.int64) for s in sets]
    return Split((xs[0] - mean) / std, ys[0], (xs[1] - mean) / std, ys[1], 10, "cifar10")


def load(name: str, **kwargs) -> Split:
    if name == "digits":
        return digits(**kwargs)
    if name == "cifar10":
        return cifar10(**kwargs)
    raise ValueError(f"unknown dataset {name!r}: use 'digits' or 'cifar10'")
