"""ImportanceSampler: data importance sampling (the DA of PA&DA) as a Sampler."""

import math
import numbers
import warnings
from collections.abc import Iterator, Sized
from typing import Optional, Union

import torch
from torch.utils.data import Sampler

from . import _codes, _dispatch, _distributed, ops
from ._transfer import to_device
from .ops._importance_update import negative_values
from .schedules import ScheduleSpec, check_epoch, make_schedule, paper_lag, score_rule

RULES = {
    # rule: (decay, reset every epoch)
    "paper": (0.5, True),  # first visit stores, a repeat averages with weight 1/2
    "ema": (0.9, False),  # exponential moving average kept across epochs
    "last": (0.0, False),  # the latest value, kept across epochs
}


class ImportanceSampler(Sampler[int]):
    """Draws each epoch's indices with replacement from
    ``q = tau * score / sum(score) + (1 - tau) / N``.

    A drop-in for ``RandomSampler`` in a ``DataLoader``. Scores come from the
    training loop: :meth:`cross_entropy` computes the loss and each sample's
    ``||softmax(z) - onehot(y)||`` in one fused kernel and credits it to the
    sample's dataset index, on the logits' device with no host sync; or
    :meth:`update` takes scores of your own. Call :meth:`set_epoch` at the start
    of every epoch (as with ``DistributedSampler``): it applies the tau schedule,
    merges scores across ranks and freezes the distribution for the epoch.

    The sampler iterates in the main process, so updates reach the next epoch
    also with ``num_workers > 0`` and ``persistent_workers=True``.

    Args:
        data_source: the dataset (anything with ``len``) or its size N.
        num_samples: indices per epoch over all ranks (default N).
        epochs: number of training epochs (needed by the linear schedules).
        tau: schedule of tau: ``"linear"`` (``epoch / epochs``, as the paper
            describes it; :meth:`paper` has the code's one-epoch lag),
            ``"linear_decrease"``, a constant, or a callable ``epoch -> tau``.
        rule: how repeated scores of an entry combine: ``"paper"`` (the authors':
            the first visit in an epoch stores the value, a repeat in the same
            epoch averages ``(s + v) / 2`` in visit order, unvisited entries count
            0 each epoch), ``"ema"`` (``s <- decay s + (1 - decay) v``, kept across
            epochs) or ``"last"`` (the latest value, kept across epochs). Repeats
            inside one batch are applied in batch order, on every device.
        decay: the decay of ``"ema"`` (default 0.9).
        granularity: ``"item"`` (a score per sample) or ``"class"`` (a score per
            class, spread evenly over the class's samples: class c is drawn with
            probability ``tau * s_c / sum(s) + (1 - tau) * n_c / N``).
        labels: the class of every sample (needed for ``"class"``).
        num_classes: number of classes (default ``max(labels) + 1``).
        device: device of the score table (default: that of the first update).
        seed: base seed, an int in [0, 2**64); epoch e draws with seed
            ``(seed + e) mod 2**64``. Default: drawn from torch's default
            generator (rank 0's, when distributed).
        num_replicas, rank: shard the epoch's list as ``DistributedSampler``
            does (default: from torch.distributed when it is initialised).
        drop_last: with several replicas, drop the tail instead of drawing a
            few more indices so that every rank gets the same count.
        shuffle_first_epoch: epoch 0 visits every item once, in a shuffled
            order (as the authors' code, whose epoch 0 is a plain shuffled
            pass), instead of drawing with replacement.

    Epochs count from 0: with ``epochs`` given, :meth:`set_epoch` rejects any
    epoch outside ``0 .. epochs - 1``. Non-finite scores (from NaN or infinite
    logits, or values that overflow the float32 table) never enter the table:
    they are skipped and counted in :attr:`skipped_scores`. Negative scores are
    errors: on CPU :meth:`update` raises at once, naming the first; on CUDA
    they are counted on the device and :meth:`set_epoch` raises. Distributed,
    every rank's error counters are summed in the epoch's all-reduce, so all
    ranks raise together. Collectives run on a device the process group
    supports: with NCCL, CPU tables and seeds travel to the current CUDA
    device. Iterating twice in one epoch (a loop that forgets :meth:`set_epoch`)
    repeats the epoch's list: it warns once.

    Host syncs on CUDA: none per step (:meth:`update`, :meth:`cross_entropy`
    with or without ``reweight``; CPU index batches are copied to the device
    from pinned memory, non-blocking). Once per epoch: :meth:`set_epoch` reads
    the status counters (to raise on out-of-range indices), and iterating reads
    the epoch's draw back (``sample_with_replacement`` also checks its weights).
    :attr:`skipped_scores` is a sync wherever it is read.
    """

    def __init__(
        self,
        data_source: Union[Sized, int],
        num_samples: Optional[int] = None,
        *,
        epochs: Optional[int] = None,
        tau: ScheduleSpec = "linear",
        rule: str = "paper",
        decay: Optional[float] = None,
        granularity: str = "item",
        labels=None,
        num_classes: Optional[int] = None,
        device=None,
        seed: Optional[int] = None,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        drop_last: bool = False,
        shuffle_first_epoch: bool = False,
    ):
        if isinstance(data_source, bool):
            raise TypeError(f"data_source must be a dataset or its size, got {data_source!r}")
        n = data_source if isinstance(data_source, numbers.Integral) else len(data_source)
        if n <= 0:
            raise ValueError(f"ImportanceSampler needs a non-empty dataset, got size {n}")
        self.n = int(n)
        _check_int("num_samples", num_samples)
        _check_int("num_classes", num_classes)
        self.num_samples = self.n if num_samples is None else int(num_samples)
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        decay, self.restart_every_epoch = score_rule(RULES, rule, decay, "ImportanceSampler")
        self.rule, self.decay = rule, float(decay)
        self.epochs = epochs
        self._tau = make_schedule(tau, epochs, "tau")
        if granularity not in ("item", "class"):
            raise ValueError(f"granularity must be 'item' or 'class', got {granularity!r}")
        self.granularity = granularity
        self.labels = None
        self.class_sizes = None
        table_size = self.n
        if granularity == "class":
            if labels is None:
                raise ValueError("granularity='class' needs labels (the class of every sample)")
            labels = torch.as_tensor(labels)
            if (
                labels.dtype.is_floating_point
                or labels.dtype.is_complex
                or labels.dtype == torch.bool
            ):
                raise TypeError(f"labels must hold integer class indices, got {labels.dtype}")
            labels = labels.to(torch.int64).flatten()
            if labels.numel() != self.n:
                raise ValueError(f"labels has {labels.numel()} entries for {self.n} samples")
            if labels.numel() and int(labels.min()) < 0:
                raise ValueError("labels must be >= 0")
            table_size = int(num_classes if num_classes is not None else int(labels.max()) + 1)
            if int(labels.max()) >= table_size:
                raise ValueError(f"a label is >= num_classes = {table_size}")
            self.labels = labels
            self.class_sizes = torch.bincount(labels, minlength=table_size).to(torch.float64)
        self.num_replicas, self.rank = _distributed.replicas(num_replicas, rank)
        self.drop_last = bool(drop_last)
        self.shuffle_first_epoch = bool(shuffle_first_epoch)
        if drop_last:
            self.per_replica = self.num_samples // self.num_replicas
        else:
            self.per_replica = math.ceil(self.num_samples / self.num_replicas)
        if self.per_replica == 0:
            raise ValueError("drop_last leaves no sample per replica")
        self.seed = _distributed.shared_seed(seed)

        dev = torch.device(device) if device is not None else torch.device("cpu")
        self._placed = device is not None
        self.scores = torch.zeros(table_size, dtype=torch.float32, device=dev)
        self.visited = torch.zeros(table_size, dtype=torch.bool, device=dev)
        self.status = torch.zeros(_codes.STATUS_SIZE, dtype=torch.int64, device=dev)
        self.negative = torch.zeros((), dtype=torch.int64, device=dev)  # CUDA: counted, raised late
        # The scores the current epoch draws from, frozen by set_epoch.
        self.epoch_scores = torch.zeros(table_size, dtype=torch.float32, device=dev)
        if self.labels is not None and self._placed:
            self.labels = to_device(self.labels, dev)
            self.class_sizes = to_device(self.class_sizes, dev)
        self.epoch = 0
        self.tau = self._tau(0)
        self._applied_epoch = None
        self._q = None
        self._generation = 0  # bumped whenever the epoch's list may change
        self._iterated = None  # the generation last iterated
        self._warned_repeat = False

    # -- configuration that reproduces the authors' data sampling ---------------
    @classmethod
    def paper(cls, data_source, epochs: int, **kwargs):
        """The authors' DA, exactly: per-sample scores, their averaging rule,
        scores restarted every epoch, epoch 0 a shuffled pass over every item,
        N draws with replacement in every later epoch, and their timing of tau:
        the draw for epoch e is built at the end of epoch e - 1 with
        tau = (e - 1) / epochs, so epoch 1 is uniform too.
        (Their first-visit test is ``score != 0``; here it is "visited", which
        differs only for a gradient norm of exactly 0.)"""
        if epochs is None or epochs <= 0:
            raise ValueError("ImportanceSampler.paper needs the number of epochs")
        kwargs.setdefault("shuffle_first_epoch", True)
        return cls(data_source, epochs=epochs, tau=paper_lag(epochs), rule="paper", **kwargs)

    # -- scores ------------------------------------------------------------------
    def _place(self, device: torch.device):
        if not self._placed:
            # Called from the first update: the tables (zeros, or a loaded state)
            # are queued from pinned memory (no host sync).
            for name in ("scores", "visited", "status", "negative", "epoch_scores"):
                setattr(self, name, to_device(getattr(self, name), device))
            if self.labels is not None:
                self.labels = to_device(self.labels, device)
                self.class_sizes = to_device(self.class_sizes, device)
            self._q = None
            self._placed = True
        elif device != self.scores.device:
            raise ValueError(
                f"ImportanceSampler: scores live on {self.scores.device}, got a batch on {device}"
            )

    def update(self, indices: torch.Tensor, scores: torch.Tensor) -> None:
        """Credits ``scores[j]`` (>= 0) to dataset item ``indices[j]`` (no host sync)."""
        indices = torch.as_tensor(indices)
        scores = torch.as_tensor(scores).detach()
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be int64 or int32, got {indices.dtype}")
        if not scores.dtype.is_floating_point:
            raise TypeError(f"scores must be floating point, got {scores.dtype}")
        if indices.shape != scores.shape or indices.dim() != 1:
            raise ValueError(
                f"indices and scores must be 1-D and alike, got {tuple(indices.shape)} "
                f"and {tuple(scores.shape)}"
            )
        self._place(scores.device)
        if self.labels is not None and indices.numel() and indices.device.type == "cpu":
            # checked on the host, where the batch's indices are, before the copy
            if int(indices.min()) < 0 or int(indices.max()) >= self.n:
                raise IndexError(f"an index is out of range for {self.n} samples")
        if scores.device.type != "cpu":  # no host sync: counted here, raised by set_epoch
            self.negative += negative_values(scores, self.scores.dtype).sum()
        dataset_indices = indices
        indices = to_device(indices, scores.device)
        if self.labels is not None:
            # An out-of-range index becomes key -1, which importance_update_ counts
            # (raised at set_epoch) instead of crediting some class.
            valid = (indices >= 0) & (indices < self.n)
            keys = self.labels.index_select(0, indices.clamp(0, self.n - 1).long())
            indices = torch.where(valid, keys, -1)
        try:
            if scores.device.type == "cpu" and not _dispatch.compiling():
                # The table is ours and the batch checked above: the compiled op's own
                # checks suffice, and it rejects a negative score before any change.
                torch.ops.pada.importance_update_(
                    self.scores,
                    self.visited,
                    self.status,
                    indices.long(),
                    scores,
                    float(self.decay),
                )
            else:
                ops.importance_update_(
                    self.scores, self.visited, self.status, indices, scores, self.decay
                )
        except ValueError:
            self._raise_negative(dataset_indices, scores)
            raise

    def _raise_negative(self, indices, scores) -> None:
        """The first negative score of a rejected batch, named by its dataset index."""
        bad = negative_values(scores, self.scores.dtype).nonzero()
        if bad.numel():
            j = int(bad[0, 0])
            raise ValueError(
                f"ImportanceSampler.update: scores[{j}] = {float(scores[j])} (dataset index "
                f"{int(indices[j])}) is negative; scores must be >= 0"
            ) from None

    def cross_entropy(self, logits, targets, indices, *, reweight: bool = False, **kwargs):
        """``F.cross_entropy(logits, targets, **kwargs)`` that also credits every
        sample's gradient norm to its dataset index. With ``reweight=True`` each
        sample's loss is multiplied by its importance weight ``1 / (N q_i)``,
        which makes the expected loss that of uniform sampling."""
        reduction = kwargs.pop("reduction", "mean")
        logits = _autocast_input(logits)
        if not reweight:
            loss, norms = ops.cross_entropy_with_grad_norm(
                logits, targets, reduction=reduction, **kwargs
            )
            self.update(indices, norms)
            return loss
        per_sample, norms = ops.cross_entropy_with_grad_norm(
            logits, targets, reduction="none", **kwargs
        )
        self.update(indices, norms)
        weighted = per_sample * self.importance_weights(indices).to(per_sample.dtype)
        if reduction == "none":
            return weighted
        if reduction == "sum":
            return weighted.sum()
        ignore_index = kwargs.get("ignore_index", -100)
        kept = (torch.as_tensor(targets) != ignore_index).sum().clamp_min(1)
        return weighted.sum() / kept

    @property
    def skipped_scores(self) -> int:
        """How many non-finite scores were skipped so far (a host sync)."""
        return int(self.status[_codes.STATUS_NONFINITE])

    # -- epochs ------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch` (0 .. epochs - 1): merges the ranks' scores, freezes them
        as the epoch's distribution, restarts them if the rule says so, and
        applies tau. Calling it again for the epoch already started changes nothing.

        Raises (on every rank alike, when distributed): ValueError for an epoch
        out of range, or for negative scores counted on the device since the
        start; IndexError for dataset indices out of range counted on the device."""
        epoch = check_epoch(epoch, self.epochs, "ImportanceSampler.set_epoch")
        if epoch == self._applied_epoch:
            return
        tau = self._tau(epoch)
        # On CUDA the kernel counts an out-of-range index, and a negative value
        # (whose index ops.importance_update_ masks), in status[0].
        flags = torch.stack([self.status[_codes.STATUS_OUT_OF_RANGE], self.negative])
        flags = _distributed.merge_visited_mean(self.scores, self.visited, flags)
        rejected, negative = (int(v) for v in flags.tolist())  # the epoch's host sync
        if negative > 0:
            raise ValueError(
                f"ImportanceSampler: {negative} negative scores were passed to update "
                "(counted on the device, reported at set_epoch); scores must be >= 0"
            )
        if rejected > 0:
            raise IndexError(
                f"ImportanceSampler: {rejected} scores had a dataset index out of "
                f"range for {self.n} samples (counted on the device, reported at set_epoch)"
            )
        self.epoch_scores = torch.where(self.visited, self.scores, torch.zeros_like(self.scores))
        if self.restart_every_epoch:
            self.scores.zero_()
            self.visited.zero_()
        self.epoch = epoch
        self.tau = tau
        self._applied_epoch = self.epoch
        self._q = None
        self._generation += 1

    def distribution(self) -> torch.Tensor:
        """Deprecated: the :attr:`probabilities` property, as PathSampler has it."""
        warnings.warn(
            "ImportanceSampler.distribution() is deprecated; use the .probabilities property",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.probabilities

    @property
    def probabilities(self) -> torch.Tensor:
        """This epoch's sampling probabilities q over the N samples (float64)."""
        if self._q is None:
            s = self.epoch_scores.to(torch.float64)
            total = s.sum()
            if self.labels is not None:  # spread each class's score over its samples
                s = s / to_device(self.class_sizes, s.device).clamp_min(1.0)
                s = s.index_select(0, self.labels)
            importance = torch.where(
                total > 0, s / total.clamp_min(torch.finfo(torch.float64).tiny), 1.0 / self.n
            )
            self._q = self.tau * importance + (1.0 - self.tau) / self.n
        return self._q

    def importance_weights(self, indices: torch.Tensor) -> torch.Tensor:
        """``1 / (N q_i)`` for the given dataset indices under this epoch's q.

        An index out of range raises IndexError on CPU; on CUDA it gets some
        weight (clamped, no device assert) and :meth:`update` counts it."""
        q = self.probabilities
        indices = torch.as_tensor(indices)
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be int64 or int32, got {indices.dtype}")
        if indices.device.type == "cpu" and indices.numel():
            bad = ((indices < 0) | (indices >= self.n)).nonzero()
            if bad.numel():
                j = int(bad[0, 0])
                raise IndexError(
                    f"indices[{j}] = {int(indices[j])} is out of range for {self.n} samples"
                )
        indices = to_device(indices, q.device).long().clamp(0, self.n - 1)
        return (1.0 / (self.n * q.index_select(0, indices))).to(torch.float32)

    def epoch_indices(self) -> torch.Tensor:
        """The whole epoch's draw over all ranks: the same on every rank, and the
        same on CPU and CUDA (the seed comes from a CPU generator)."""
        q = self.probabilities
        g = torch.Generator().manual_seed(_distributed.epoch_seed(self.seed, self.epoch))
        total = self.per_replica * self.num_replicas
        if self.shuffle_first_epoch and self.epoch == 0:
            # every item once per pass, as many (shuffled) passes as `total` needs
            passes = [torch.randperm(self.n, generator=g) for _ in range(-(-total // self.n))]
            return torch.cat(passes)[:total].to(q.device)
        return ops.sample_with_replacement(q, total, generator=g)

    def __iter__(self) -> Iterator[int]:
        if self._iterated == self._generation and not self._warned_repeat:
            self._warned_repeat = True
            warnings.warn(
                f"ImportanceSampler: iterated again in epoch {self.epoch} without set_epoch: "
                "this repeats the epoch's list and never uses the new scores. Call "
                "sampler.set_epoch(epoch) at the start of every epoch (warned once)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._iterated = self._generation
        draw = self.epoch_indices()
        return iter(draw[self.rank :: self.num_replicas].tolist())  # once per epoch: a sync

    def __len__(self) -> int:
        return self.per_replica

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "n": self.n,
            "rule": self.rule,
            "decay": self.decay,
            "granularity": self.granularity,
            "seed": self.seed,
            "epoch": self.epoch,
            "applied_epoch": self._applied_epoch,
            # copies, also on CPU: a snapshot, not the live tables
            "scores": _snapshot(self.scores),
            "visited": _snapshot(self.visited),
            "status": _snapshot(self.status),
            "negative": _snapshot(self.negative),
            "epoch_scores": _snapshot(self.epoch_scores),
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("n", "rule", "decay", "granularity"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"state_dict was saved with {key}={state[key]!r}, this sampler has "
                    f"{getattr(self, key)!r}"
                )
        if state["scores"].numel() != self.scores.numel():
            raise ValueError("state_dict has a score table of another size")
        device = self.scores.device
        self.scores = state["scores"].to(device, torch.float32).clone()
        self.visited = state["visited"].to(device, torch.bool).clone()
        self.status = state["status"].to(device, torch.int64).clone()
        self.negative = torch.as_tensor(state.get("negative", 0)).to(device, torch.int64).clone()
        self.epoch_scores = state["epoch_scores"].to(device, torch.float32).clone()
        self.seed = _distributed.check_seed(state["seed"], "state_dict['seed']")
        self.epoch = int(state["epoch"])
        self._applied_epoch = state["applied_epoch"]
        self.tau = self._tau(self.epoch)
        self._q = None
        self._generation += 1


def _check_int(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an int, got {value!r}")


def _snapshot(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def _autocast_input(logits: torch.Tensor) -> torch.Tensor:
    """Under autocast, ``F.cross_entropy`` runs in float32 (autocast's float32 list);
    the fused op has no autocast rule of its own, so its logits are cast here alike."""
    if not isinstance(logits, torch.Tensor) or logits.dtype == torch.float32:
        return logits
    device_type = logits.device.type
    try:
        active = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        cpu = device_type == "cpu"
        active = torch.is_autocast_cpu_enabled() if cpu else torch.is_autocast_enabled()
    return logits.float() if active else logits
