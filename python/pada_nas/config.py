"""The experiment's settings, in one vocabulary for the supernets and the standalone
(ground-truth) networks: the config, its presets, the sampler names and their labels,
the dataset it names, the network it describes and the autocast it asks for."""

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from . import data as datasets
from .evaluate import RANK_SCORES
from .nb201 import Supernet

SAMPLERS = ("spos", "da", "pa", "pada")
LABELS = {"spos": "SPOS", "da": "DA", "pa": "PA", "pada": "PA&DA"}
AMP_DTYPES = {"bf16": torch.bfloat16}


@dataclass
class Config:
    """Training settings. A supernet run reads every field; standalone training
    (pada_nas.standalone) reads the network, optimisation and eval_batch ones."""

    dataset: str = "digits"
    train_size: int = 1000
    split_seed: int = 0
    # digits_distorted only: the generated test split's size and the pixel noise
    test_images: int = 12_000
    sigma: float = 0.5
    channels: int = 8
    cells: int = 1
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 2.5e-4
    grad_clip: float = 5.0
    # "paper": ImportanceSampler.paper / PathSampler.paper (the authors' rules);
    # "default": the pada_ext constructors' defaults.
    rules: str = "paper"
    eval_batch: int = 256  # BN uses batch statistics: eval batches of (about) this size
    eval_every: int = 10  # ranking metrics every k epochs (and always at the last)
    curve_test_size: Optional[int] = 256  # test images for the intermediate evals
    test_size: Optional[int] = None  # test images for the final eval (None: the whole split)
    # what the supernet ranks paths by (pada_nas.evaluate.RANK_SCORES): "accuracy", as the
    # paper, or "p_correct", the mean softmax probability of the true class
    rank_by: str = "accuracy"
    device: str = "cpu"  # where the supernet trains and is evaluated
    amp: Optional[str] = None  # None or "bf16": bfloat16 autocast of forward and loss
    # the model in channels_last: on CPUs with AMX (bf16) or AVX-512 the convolutions are
    # faster, which makes a 16-channel network as cheap as an 8-channel one in NCHW
    channels_last: bool = False

    def __post_init__(self):
        # here, not at the end of a training run that could not report its ranking
        if self.rank_by not in RANK_SCORES:
            raise ValueError(f"rank_by must be one of {RANK_SCORES}, got {self.rank_by!r}")


PRESETS = {
    # The authors' NAS-Bench-201 run (needs a GPU and torchvision).
    "authors": dict(
        dataset="cifar10", channels=16, cells=5, epochs=250, batch_size=256, eval_batch=256
    ),
    # This machine: digits, about a minute per supernet on one core.
    # channels / cells / train_size are taken from the ground truth's config when given.
    "small": dict(dataset="digits", channels=4, cells=1, train_size=500, epochs=50, batch_size=64),
    # The comparison on python/ground_truth/digits_distorted_c16.json (its network and split,
    # read from the file, and its bf16 channels_last arithmetic): 1,320 steps of batch 128,
    # paths ranked on 3,000 test images by p_correct.
    "distorted": dict(
        dataset="digits_distorted",
        channels=16,
        cells=1,
        train_size=14_000,
        test_images=24_000,
        epochs=12,
        batch_size=128,
        lr=0.05,
        eval_every=3,
        test_size=3000,
        rank_by="p_correct",
        amp="bf16",
        channels_last=True,
    ),
}
# The ground truth each preset ranks against by default (python/ground_truth/<name>).
PRESET_GROUND_TRUTH = {"small": "digits.json", "distorted": "digits_distorted_c16.json"}


def make_config(preset: str = "small", **overrides) -> Config:
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)


def load_split(cfg: Config, data_root: str = "./data", download: bool = True):
    """The dataset split of `cfg` (kept on the CPU; batches go to cfg.device)."""
    if cfg.dataset == "digits":
        return datasets.digits(cfg.train_size, cfg.split_seed)
    if cfg.dataset == "cifar10":
        return datasets.cifar10(data_root, download=download)
    if cfg.dataset == "digits_distorted":
        return datasets.digits_distorted(
            cfg.train_size, cfg.test_images, cfg.sigma, split_seed=cfg.split_seed
        )
    return datasets.load(cfg.dataset)


def make_supernet(cfg: Config, split) -> Supernet:
    """The network of `cfg` for `split`'s images and classes, on the CPU (initialised from
    torch's global generator), in channels_last when cfg.channels_last asks for it."""
    model = Supernet(cfg.channels, cfg.cells, split.num_classes, split.in_channels)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def autocast(cfg: Config):
    """bfloat16 autocast on cfg.device when cfg.amp asks for it, else a no-op."""
    if cfg.amp is None:
        return contextlib.nullcontext()
    if cfg.amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)} or None, got {cfg.amp!r}")
    return torch.autocast(torch.device(cfg.device).type, dtype=AMP_DTYPES[cfg.amp])
