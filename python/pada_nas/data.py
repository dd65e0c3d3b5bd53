"""Datasets for the experiments.

The embedded default works offline on a fresh machine: the 1,797 handwritten
digits (8x8, 10 classes) that ship with scikit-learn, real images, split once
by a fixed permutation into a training and a test set. ``digits_distorted`` makes
a harder task from them (16x16, seeded affine distortions and noise, tens of
thousands of images, test images from source digits no training image uses). CIFAR-10 is read from
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


def digit_sources(test_sources: int = 597, split_seed: int = 0) -> tuple:
    """The source digits of :func:`digits_distorted`: (train, test) index tensors into
    sklearn's 1,797 digits, disjoint, from one fixed permutation."""
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(split_seed))
    if not 1 <= test_sources <= 1797 - 10:
        raise ValueError(f"test_sources must be in [1, 1787], got {test_sources}")
    return order[test_sources:], order[:test_sources]


def distort(images: torch.Tensor, sigma: float, generator: torch.Generator, size: int = 16):
    """Upsampled to size x size (bilinear), one seeded affine distortion per image
    (rotation +-15 degrees, translation +-2 px, scale 0.9-1.1), then i.i.d.
    Gaussian noise of std `sigma` on the [0, 1] pixel scale. `images` is [n, 1, h, w]
    in [0, 1]; the draws come from `generator` in a fixed order."""
    import torch.nn.functional as F

    n = images.shape[0]
    up = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    angle = (u[:, 0] * 2 - 1) * (15 * np.pi / 180)
    shift = (u[:, 1:3] * 2 - 1) * (2 * 2 / size)  # +-2 px in grid units ([-1, 1] spans size px)
    scale = 0.9 + 0.2 * u[:, 3]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).float()
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + sigma * torch.randn(out.shape, generator=generator)


def digits_distorted(
    train_size: int = 20_000,
    test_images: int = 12_000,
    sigma: float = 0.5,
    test_sources: int = 597,
    split_seed: int = 0,
    seed: int = 0,
) -> Split:
    """A harder task made from the embedded digits, deterministically, labels untouched.

    The 1,797 source digits are split first (:func:`digit_sources`), so that no test
    image comes from a source digit that any training image comes from. Image i of a
    split is a :func:`distort`-ed copy of source i mod (number of sources), in the
    split's own seeded stream (``seed`` for training, ``seed + 1`` for test); its label
    is its source's. Standardised with the training images' mean and std.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    parts = []
    for offset, (sources, count) in enumerate(
        zip(digit_sources(test_sources, split_seed), (train_size, test_images))
    ):
        if count < 1:
            raise ValueError(f"digits_distorted: split sizes must be >= 1, got {count}")
        gen = torch.Generator().manual_seed(seed + offset)
        src = sources[torch.arange(count) % len(sources)]
        parts.append((distort(x[src], sigma, gen), y[src]))
    (x_train, y_train), (x_test, y_test) = parts
    mean, std = x_train.mean(), x_train.std()
    return Split(
        (x_train - mean) / std, y_train, (x_test - mean) / std, y_test, 10, "digits_distorted"
    )


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
    if name == "digits_distorted":
        return digits_distorted(**kwargs)
    raise ValueError(f"unknown dataset {name!r}: use 'digits', 'digits_distorted' or 'cifar10'")
