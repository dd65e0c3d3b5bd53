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

import dataclasses
import math
import time
from dataclasses import asdict
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm import tqdm

from pada_ext import ImportanceSampler, IndexedDataset, PathSampler

from .config import SAMPLERS, Config, autocast, load_split, make_supernet
from .evaluate import path_scores, rank_scores
from .metrics import GradVariance
from .nb201 import NUM_EDGES, OPS, Supernet


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


class Run:
    """One supernet's training state: the model, its samplers, loader and optimizer."""

    def __init__(self, kind: str, cfg: Config, seed: int, split):
        self.kind, self.cfg, self.split = kind, cfg, split
        self.device = torch.device(cfg.device)
        torch.manual_seed(seed)
        # initialised on the CPU (the same weights on every device), then moved (the move keeps
        # the memory format)
        self.model = make_supernet(cfg, split).to(self.device)
        self.n = len(split.y_train)
        self.data_sampler, self.path_sampler = build_samplers(kind, self.model, self.n, cfg, seed)
        self.is_da = isinstance(self.data_sampler, ImportanceSampler)
        self.loader = DataLoader(
            IndexedDataset(TensorDataset(split.x_train, split.y_train)),
            batch_size=cfg.batch_size,
            sampler=self.data_sampler,
            pin_memory=self.device.type == "cuda",  # lets the copies below be non-blocking
        )
        self.params = list(self.model.parameters())  # listed once: .parameters() walks modules
        self.optimizer = torch.optim.SGD(
            self.params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs)
        self.gv = GradVariance(op_parameters(self.model))
        self.op_counts = [0] * len(OPS)

    def set_epoch(self, epoch: int) -> None:
        self.model.train()
        for s in (self.data_sampler, self.path_sampler):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)

    def step(self, x, y, idx):
        """One SPOS step on a sampled path; returns the loss and the logits (detached)."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        path = self.path_sampler.sample()
        for j in path:
            self.op_counts[j] += 1
        with autocast(self.cfg):
            logits = self.model(x, path)
            if self.is_da:  # idx stays on the host: the sampler copies it (pinned)
                loss = self.data_sampler.cross_entropy(logits, y, idx)
            else:
                loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.path_sampler.record(path)
        self.gv.add(path)
        return loss.detach(), logits.detach(), y

    def entropies(self) -> dict:
        """This epoch's sampling distributions' entropy over the uniform one's (1.0: uniform):
        per decision for paths (mean over decisions), over the N samples for data."""
        out = {"path_entropy": 1.0, "data_entropy": 1.0}  # SPOS: uniform paths and data
        if hasattr(self.path_sampler, "probabilities"):
            p = self.path_sampler.probabilities
            out["path_entropy"] = float(normalised_entropy(p).mean())
        if self.is_da:
            out["data_entropy"] = float(normalised_entropy(self.data_sampler.probabilities))
        return out

    def train_epoch(self, epoch: int) -> dict:
        """One epoch; its mean loss, train accuracy, GV, learning rate and the entropy of the
        distributions it sampled from (one host read each)."""
        self.set_epoch(epoch)
        entropies = self.entropies()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for x, y, idx in self.loader:
            loss, logits, y = self.step(x, y, idx)
            total_loss += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        lr = self.optimizer.param_groups[0]["lr"]
        self.schedule.step()
        return {
            "loss": float(total_loss) / seen,
            "train_acc": float(correct) / seen,
            "gv": self.gv.epoch_value(),
            "lr": lr,
            **entropies,
        }

    def rank(self, eval_sets: dict, x, y) -> dict:
        """``{set name: (path scores, rank metrics)}`` of the ground-truth path sets: the
        supernet's scores of every path (``path_scores``) and KT / P@Top5% of the ranking by
        each score; the ranking by ``cfg.rank_by`` is the one reported."""
        out = {}
        for name, (paths, truth) in eval_sets.items():
            scores = path_scores(self.model, paths, x, y, self.cfg.eval_batch, autocast(self.cfg))
            out[name] = (scores, {k: rank_scores(v, truth) for k, v in scores.items()})
        return out

    def sampler_record(self) -> dict:
        """What the samplers ended with: the path distribution and op scores, the data scores."""
        rec = {}
        ps, ds = self.path_sampler, self.data_sampler
        if hasattr(ps, "probabilities"):
            # the last epoch's distribution, and the op scores learnt during it
            rec["path_probs"] = ps.probabilities[0].tolist()
            rec["path_scores"] = ps.scores[0].tolist()
        if self.is_da:
            q = ds.probabilities
            rec["data_q_max_over_uniform"] = float(q.max() * self.n)
            rec["data_scored"] = int(ds.visited.sum())  # samples scored last epoch
            rec["data_score_mean"] = float(ds.scores[ds.visited].mean())
        return rec


EPOCH_KEYS = ("loss", "train_acc", "gv", "lr", "path_entropy", "data_entropy")


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of the distribution(s) `p` over log(row length)."""
    p = p.double()
    h = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)
    return h / math.log(p.shape[-1])


def op_parameters(model: Supernet) -> list:
    """Parameters of each (edge, op) over the cells: the grouping PathSampler scores."""
    return [
        [[p for inst in edge for p in inst[j].parameters()] for j in range(len(OPS))]
        for edge in model.decisions()
    ]


def with_test_size(split, size: Optional[int]):
    """The split with its first `size` test images only (all when size is None)."""
    if not size:
        return split
    return dataclasses.replace(split, x_test=split.x_test[:size], y_test=split.y_test[:size])


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
    split = with_test_size(split if split is not None else load_split(cfg), cfg.test_size)
    run = Run(kind, cfg, seed, split)
    eval_sets = eval_sets or {}
    record = {"sampler": kind, "seed": seed}
    record.update({k: [] for k in EPOCH_KEYS})
    record["curves"] = {name: {"epoch": [], "kt": [], "p_top5": []} for name in eval_sets}
    curve = None
    if cfg.curve_test_size:
        curve = split.x_test[: cfg.curve_test_size], split.y_test[: cfg.curve_test_size]
    started = time.perf_counter()
    train_seconds = eval_seconds = 0.0
    bar = tqdm(range(cfg.epochs), desc=f"{kind} seed {seed}", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        for key, value in run.train_epoch(epoch).items():
            record[key].append(value)
        train_seconds += time.perf_counter() - t0
        last = epoch == cfg.epochs - 1
        if eval_sets and (last or (epoch + 1) % cfg.eval_every == 0):
            t0 = time.perf_counter()
            xs, ys = (split.x_test, split.y_test) if last or curve is None else curve
            for name, (scores, by_score) in run.rank(eval_sets, xs, ys).items():
                c = record["curves"][name]
                c["epoch"].append(epoch + 1)
                for key, value in by_score[cfg.rank_by].items():
                    c[key].append(value)
                if last:
                    record.setdefault("final", {})[name] = {
                        **by_score[cfg.rank_by],
                        "rank_by": cfg.rank_by,
                        "by_score": by_score,
                        "supernet_acc": scores["accuracy"],
                        "supernet_p_correct": scores["p_correct"],
                    }
            eval_seconds += time.perf_counter() - t0
        bar.set_postfix(loss=f"{record['loss'][-1]:.3f}", gv=f"{record['gv'][-1]:.2e}")
    record["op_counts"] = run.op_counts
    record.update(run.sampler_record())
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
