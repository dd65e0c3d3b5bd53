"""SPOS-style supernet training (one path per step) with four samplers.

``uniform`` paths and a plain ``RandomSampler`` is SPOS; ``da`` swaps the data
sampler for ``pada_ext.ImportanceSampler``; ``pa`` swaps the path draw for
``pada_ext.PathSampler``; ``pada`` does both. Everything else (model, optimizer,
schedule, clipping, batch, number of steps) is identical, so the four differ
only in what they sample.

``Config.device`` places the supernet, its samplers and every batch (copied
from pinned memory, non-blocking, on CUDA); ``Config.amp = "bf16"`` runs the
forward and the loss under bfloat16 autocast (training and evaluation).
"""

import contextlib
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm import tqdm

from pada_ext import ImportanceSampler, IndexedDataset, PathSampler

from . import data as datasets
from .evaluate import evaluate_paths, rank_scores
from .metrics import GradVariance
from .nb201 import NUM_EDGES, OPS, Supernet

SAMPLERS = ("spos", "da", "pa", "pada")


@dataclass
class Config:
    dataset: str = "digits"
    train_size: int = 1000
    split_seed: int = 0
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
    device: str = "cpu"  # where the supernet trains and is evaluated
    amp: Optional[str] = None  # None or "bf16": bfloat16 autocast of forward and loss
    extra: dict = field(default_factory=dict)


PRESETS = {
    # The authors' NAS-Bench-201 run (needs a GPU and torchvision).
    "authors": dict(
        dataset="cifar10", channels=16, cells=5, epochs=250, batch_size=256, eval_batch=256
    ),
    # This machine: digits, about a minute per supernet on one core.
    # channels / cells / train_size are taken from the ground truth's config when given.
    "small": dict(dataset="digits", channels=4, cells=1, train_size=500, epochs=50, batch_size=64),
}


def make_config(preset: str = "small", **overrides) -> Config:
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)


AMP_DTYPES = {"bf16": torch.bfloat16}


def load_split(cfg: Config, data_root: str = "./data", download: bool = True):
    """The dataset split of `cfg` (kept on the CPU; batches go to cfg.device)."""
    if cfg.dataset == "digits":
        return datasets.digits(cfg.train_size, cfg.split_seed)
    if cfg.dataset == "cifar10":
        return datasets.cifar10(data_root, download=download)
    return datasets.load(cfg.dataset)


def autocast(cfg: Config):
    """bfloat16 autocast on cfg.device when cfg.amp asks for it, else a no-op."""
    if cfg.amp is None:
        return contextlib.nullcontext()
    if cfg.amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)} or None, got {cfg.amp!r}")
    return torch.autocast(torch.device(cfg.device).type, dtype=AMP_DTYPES[cfg.amp])


class UniformPaths:
    """SPOS: every edge draws its op uniformly (seeded, independent of torch's RNG)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self):
        return torch.randint(len(OPS), (NUM_EDGES,), generator=self.generator).tolist()

    def set_epoch(self, epoch):
        pass

    def record(self, path):
        pass


def build_samplers(kind: str, model: Supernet, n: int, cfg: Config, seed: int):
    """(data sampler, path sampler) for one of SAMPLERS; the score tables live on
    cfg.device (the path sampler's on its parameters' device)."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")
    if kind in ("da", "pada"):
        if cfg.rules == "paper":
            data = ImportanceSampler.paper(n, cfg.epochs, seed=seed, device=cfg.device)
        else:
            data = ImportanceSampler(n, epochs=cfg.epochs, seed=seed, device=cfg.device)
    else:
        data = RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))
    if kind in ("pa", "pada"):
        if cfg.rules == "paper":
            paths = PathSampler.paper(model.decisions(), cfg.epochs, seed=seed + 1)
        else:
            paths = PathSampler(model.decisions(), epochs=cfg.epochs, seed=seed + 1)
    else:
        paths = UniformPaths(seed + 1)
    return data, paths


def train(
    kind: str,
    cfg: Config,
    seed: int,
    eval_sets: Optional[dict] = None,
    split=None,
    progress: bool = True,
) -> dict:
    """Trains one supernet and returns its record.

    Args:
        kind: one of SAMPLERS.
        eval_sets: ``{name: (paths, ground_truth_accuracies)}``; ranked every
            ``cfg.eval_every`` epochs and at the end.
        split: a loaded dataset split (loaded from cfg when None).

    Returns a dict with per-epoch ``loss``, ``train_acc``, ``gv``, ``lr``, the
    ``curves`` of KT/P@Top5% per evaluated epoch, the ``final`` metrics on the
    full test split, the final ``path_probs``, and the seconds spent.
    """
    split = split if split is not None else load_split(cfg)
    if cfg.test_size:
        split = dataclasses.replace(
            split, x_test=split.x_test[: cfg.test_size], y_test=split.y_test[: cfg.test_size]
        )
    device = torch.device(cfg.device)
    torch.manual_seed(seed)
    # initialised on the CPU (the same weights on every device), then moved
    model = Supernet(cfg.channels, cfg.cells, split.num_classes, split.in_channels).to(device)
    n = len(split.y_train)
    data_sampler, path_sampler = build_samplers(kind, model, n, cfg, seed)
    dataset = IndexedDataset(TensorDataset(split.x_train, split.y_train))
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=data_sampler,
        pin_memory=device.type == "cuda",  # lets the copies below be non-blocking
    )
    params = list(model.parameters())  # listed once: .parameters() walks every module
    optimizer = torch.optim.SGD(
        params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    # Same grouping of the candidate ops' parameters as PathSampler uses.
    op_params = [
        [[p for inst in edge for p in inst[j].parameters()] for j in range(len(OPS))]
        for edge in model.decisions()
    ]
    gv = GradVariance(op_params)
    is_da = isinstance(data_sampler, ImportanceSampler)
    record = {"sampler": kind, "seed": seed, "loss": [], "train_acc": [], "gv": [], "lr": []}
    record["curves"] = {name: {"epoch": [], "kt": [], "p_top5": []} for name in eval_sets or {}}
    record["op_counts"] = [0] * len(OPS)
    curve_x = curve_y = None
    if cfg.curve_test_size:
        curve_x, curve_y = split.x_test[: cfg.curve_test_size], split.y_test[: cfg.curve_test_size]
    started = time.perf_counter()
    train_seconds = eval_seconds = 0.0
    bar = tqdm(range(cfg.epochs), desc=f"{kind} seed {seed}", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        for s in (data_sampler, path_sampler):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)
        # accumulated on the device, read once per epoch
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for x, y, idx in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            path = path_sampler.sample()
            for j in path:
                record["op_counts"][j] += 1
            with autocast(cfg):
                logits = model(x, path)
                if is_da:  # idx stays on the host: the sampler copies it (pinned)
                    loss = data_sampler.cross_entropy(logits, y, idx)
                else:
                    loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            path_sampler.record(path)
            gv.add(path)
            total_loss += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        record["lr"].append(optimizer.param_groups[0]["lr"])
        schedule.step()
        record["loss"].append(float(total_loss) / seen)
        record["train_acc"].append(float(correct) / seen)
        record["gv"].append(gv.epoch_value())
        train_seconds += time.perf_counter() - t0
        last = epoch == cfg.epochs - 1
        if eval_sets and (last or (epoch + 1) % cfg.eval_every == 0):
            t0 = time.perf_counter()
            full = last or curve_x is None
            xs, ys = (split.x_test, split.y_test) if full else (curve_x, curve_y)
            for name, (paths, truth) in eval_sets.items():
                acc = evaluate_paths(model, paths, xs, ys, cfg.eval_batch, autocast(cfg))
                c = record["curves"][name]
                c["epoch"].append(epoch + 1)
                for key, value in rank_scores(acc, truth).items():
                    c[key].append(value)
                if last:
                    record.setdefault("final", {})[name] = {
                        **rank_scores(acc, truth),
                        "supernet_acc": acc,
                    }
            eval_seconds += time.perf_counter() - t0
        bar.set_postfix(loss=f"{record['loss'][-1]:.3f}", gv=f"{record['gv'][-1]:.2e}")
    if hasattr(path_sampler, "probabilities"):
        # the last epoch's distribution, and the op scores learnt during it
        record["path_probs"] = path_sampler.probabilities[0].tolist()
        record["path_scores"] = path_sampler.scores[0].tolist()
    if is_da:
        q = data_sampler.distribution()
        record["data_q_max_over_uniform"] = float(q.max() * n)
        record["data_scored"] = int(data_sampler.visited.sum())  # samples scored last epoch
        record["data_score_mean"] = float(data_sampler.scores[data_sampler.visited].mean())
    record["seconds"] = {
        "train": train_seconds,
        "eval": eval_seconds,
        "total": time.perf_counter() - started,
    }
    record["mean_gv"] = float(sum(record["gv"]) / len(record["gv"]))
    record["final_gv"] = record["gv"][-1]
    record["config"] = asdict(cfg)
    if not all(math.isfinite(v) for v in record["loss"]):
        record["diverged"] = True
    return record
