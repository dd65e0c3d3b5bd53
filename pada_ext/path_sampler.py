"""PathSampler: path importance sampling (the PA of PA&DA) for SPOS supernets."""

import math
import operator
import warnings
from collections import OrderedDict, deque
from collections.abc import Sequence
from itertools import repeat
from typing import Optional

import torch
from torch import nn

from . import _distributed, ops
from ._transfer import HostCopy, to_device
from .schedules import ScheduleSpec, make_schedule

# rule: (decay, restart every epoch)
RULES = {
    "paper": (0.5, True),  # s <- (s + step) / 2 from s = 0 each epoch (the authors')
    "ema": (0.9, False),  # first step stores, then s <- decay s + (1 - decay) step
    "mean": (None, True),  # the mean of the epoch's steps
}
NORMS = ("l2", "paper")
_CACHE_SIZE = 4096


class PathSampler:
    """Draws SPOS paths (one candidate op per decision) from
    ``p = delta * score / sum(score) + (1 - delta) / K`` and learns the scores
    from the gradients of the ops on each trained path.

    Usage, per step: ``path = sampler.sample()``; forward/backward on that path;
    (clip, ``optimizer.step()``); ``sampler.record(path)``. Per epoch:
    ``sampler.set_epoch(epoch)`` at its start. :meth:`record` reads the
    gradients of every op on the path with one fused kernel
    (:func:`pada_ext.ops.grouped_grad_norm`) and updates the scores on the
    parameters' device with no host sync.

    Host syncs on CUDA: :meth:`set_epoch` reads the scores back once per epoch.
    Per step, :meth:`record` never syncs. A path is a host decision (it picks
    the modules to run), so with ``update="step"`` :meth:`sample` needs the
    distribution that a :meth:`record` computed on the device: ``record``
    queues its copy into pinned host memory, and ``sample`` waits for the copy
    queued ``lag + 1`` records back (an event wait, not a device sync). With
    ``lag=0`` that is the step just trained, so the host waits for its backward;
    ``lag=1`` lets the host queue the next step while the GPU finishes this one.
    Distributed, ``update="step"`` all-reduces the scores at every record (so
    every rank draws the same paths); ``update="epoch"`` once per epoch.

    Args:
        edges: the decisions of the search space, in path order. Each is an
            ``nn.ModuleList`` of its K candidate ops (in op order), or a list of
            such ModuleLists that share the decision (e.g. the same edge of every
            cell, as NAS-Bench-201 supernets draw one op per edge for all cells).
            Parameter-free ops are allowed: they never score, so they keep the
            uniform share only.
        epochs: number of training epochs (needed by the linear schedules).
        delta: schedule of delta: ``"linear"`` (``epoch / epochs``),
            ``"linear_decrease"``, a constant, or a callable.
        shared: one distribution shared by all decisions (the authors' choice)
            or one per decision.
        update: ``"epoch"`` (the distribution changes at :meth:`set_epoch`, the
            authors' choice) or ``"step"`` (after every :meth:`record`; see
            ``lag``). Table 4 of the paper compares both.
        norm: a step's score of an op: ``"l2"`` (the L2 norm of all its gradient
            elements on the path; with a shared distribution, the root mean square
            over the decisions that chose it) or ``"paper"`` (the authors': the sum
            over its instances and parameters of each gradient tensor's L2 norm,
            divided by the number of decisions that chose it).
        rule: how step scores combine: ``"paper"`` (``s <- (s + step) / 2``,
            starting from 0 every epoch), ``"ema"`` (kept across epochs) or
            ``"mean"`` (the mean over the epoch's steps).
        decay: the decay of ``"ema"``.
        seed: seed of the path generator. Default: drawn from torch's default
            generator (rank 0's when distributed, so every rank draws the same paths).
        flat_grads: keep the candidate ops' gradients as views into one flat
            buffer (as DDP's bucket views), each (edge, op) block contiguous, so
            that :meth:`record` reads a few blocks instead of walking every
            parameter. It needs the ``.grad`` tensors to be kept between steps:
            zero them in place (``optimizer.zero_grad(set_to_none=False)``). If
            they are replaced anyway, :meth:`record` notices, warns once and
            goes on without the buffer. All candidate-op parameters must share
            one dtype and device.
        lag: with ``update="step"``, :meth:`sample` draws from the distribution
            of ``lag`` records back (0: the latest, exactly per step; 1: one
            step stale, so the host never waits for the step it just queued).
            The same on every device.
    """

    def __init__(
        self,
        edges: Sequence,
        *,
        epochs: Optional[int] = None,
        delta: ScheduleSpec = "linear",
        shared: bool = True,
        update: str = "epoch",
        norm: str = "l2",
        rule: str = "ema",
        decay: Optional[float] = None,
        seed: Optional[int] = None,
        flat_grads: bool = False,
        lag: int = 0,
    ):
        self.decisions = [_instances(e, k) for k, e in enumerate(edges)]
        if not self.decisions:
            raise ValueError("PathSampler needs at least one decision (edge)")
        widths = {len(m) for inst in self.decisions for m in inst}
        if len(widths) != 1:
            raise ValueError(f"every edge needs the same number of candidate ops, got {widths}")
        self.num_ops = widths.pop()
        if self.num_ops < 1:
            raise ValueError("an edge has no candidate op")
        if update not in ("epoch", "step"):
            raise ValueError(f"update must be 'epoch' or 'step', got {update!r}")
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
            raise ValueError(f"lag must be an int >= 0, got {lag!r}")
        if lag and update != "step":
            raise ValueError(f"lag applies to update='step' only (update={update!r})")
        self.lag = lag
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        default_decay, self.restart_every_epoch = RULES[rule]
        if decay is not None and rule != "ema":
            raise ValueError(f"decay applies to rule='ema' only (rule={rule!r})")
        self.decay = default_decay if decay is None else float(decay)
        if rule == "ema" and not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.shared, self.update, self.norm, self.rule = shared, update, norm, rule
        self.epochs = epochs
        self._delta = make_schedule(delta, epochs, "delta")

        # Parameters of (decision k, op j) over all instances, in a fixed order.
        self._params = [
            [[p for inst in insts for p in inst[j].parameters()] for j in range(self.num_ops)]
            for insts in self.decisions
        ]
        devices = {p.device for ps in self._params for plist in ps for p in plist}
        if len(devices) > 1:
            raise ValueError(f"the candidate ops' parameters are on several devices: {devices}")
        self.device = devices.pop() if devices else torch.device("cpu")
        rows = 1 if shared else len(self.decisions)
        self.scores = torch.zeros(rows, self.num_ops, device=self.device)
        self.seen = torch.zeros(rows, self.num_ops, dtype=torch.bool, device=self.device)
        self.count = torch.zeros(rows, self.num_ops, device=self.device)
        self.probs = torch.full((rows, self.num_ops), 1.0 / self.num_ops, dtype=torch.float64)
        self.seed = _distributed.shared_seed(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.epoch = 0
        self.delta = self._delta(0)
        self._applied_epoch = None
        self._pending = deque()  # update="step": HostCopy of each record's distribution
        self._plans = OrderedDict()  # path -> precomputed grouping, LRU
        self._flat = self._install_flat_grads() if flat_grads else None

    def _install_flat_grads(self):
        params = [p for ps in self._params for plist in ps for p in plist]
        if not params:
            return None
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"flat_grads needs one dtype for all candidate ops, got {dtypes}")
        flat = torch.zeros(sum(p.numel() for p in params), dtype=dtypes.pop(), device=self.device)
        self._blocks = [[None] * self.num_ops for _ in self.decisions]
        self._probes = [[None] * self.num_ops for _ in self.decisions]
        offset = 0
        for k, ps in enumerate(self._params):
            for j, plist in enumerate(ps):
                start = offset
                for p in plist:
                    view = flat[offset : offset + p.numel()].view_as(p)
                    if p.grad is not None:
                        view.copy_(p.grad)
                    p.grad = view
                    offset += p.numel()
                if plist:
                    self._blocks[k][j] = flat[start:offset]
                    self._probes[k][j] = (plist[0], plist[0].grad)
        return flat

    @classmethod
    def paper(cls, edges, epochs: int, **kwargs):
        """The authors' PA, exactly: one distribution for all edges, updated per
        epoch; per step, the sum of the conv weight and bias gradient norms of
        each op over the path's cells, divided by the number of edges that chose
        it, averaged into the op's score as (s + step) / 2 from 0 every epoch;
        and their timing of delta: the distribution for epoch e is built at the
        end of epoch e - 1 with delta = (e - 1) / epochs (epochs 0, 1 uniform)."""
        if epochs is None or epochs <= 0:
            raise ValueError("PathSampler.paper needs the number of epochs")
        return cls(
            edges,
            epochs=epochs,
            delta=lambda e: max(e - 1, 0) / epochs,
            shared=True,
            update="epoch",
            norm="paper",
            rule="paper",
            **kwargs,
        )

    # -- sampling -----------------------------------------------------------------
    def sample(self) -> list:
        """One op index per decision, drawn from the current distribution (on the host)."""
        self._adopt()
        d = len(self.decisions)
        if self.shared:
            draw = ops.sample_with_replacement(self.probs[0], d, generator=self.generator)
        else:
            u = torch.rand(d, 1, dtype=torch.float64, generator=self.generator)
            cdf = self.probs.cumsum(1)
            draw = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=self.num_ops - 1)
        return draw.flatten().tolist()

    # -- scores -------------------------------------------------------------------
    def _plan(self, path: tuple):
        """Grouping of the path's parameters for the fused norm, cached per path."""
        plan = self._plans.get(path)
        if plan is not None:
            self._plans.move_to_end(path)
            return plan
        rows = 1 if self.shared else len(self.decisions)
        cells = rows * self.num_ops
        params, groups, owner = [], [], []
        plan = {}
        on_path = torch.zeros(rows, self.num_ops, dtype=torch.bool)
        uses = [0] * self.num_ops
        for j in path:
            uses[j] += 1
        blocks, block_cells, probes = [], [], []  # flat_grads: one entry per decision
        for k, j in enumerate(path):
            cell = (0 if self.shared else k) * self.num_ops + j
            if self._params[k][j]:
                on_path.view(-1)[cell] = True
                if self._flat is not None:
                    blocks.append(self._blocks[k][j])
                    block_cells.append(cell)
                    probes.append(self._probes[k][j])
            for p in self._params[k][j]:
                params.append(p)
                owner.append(cell)
                # l2: a group per (row, op) cell; paper: a group per tensor.
                groups.append(len(groups) if self.norm == "paper" else cell)
        # paper: step = norms @ mix sums each cell's tensor norms and divides by
        # the number of decisions that chose the op (one kernel, no scatter).
        mix = torch.zeros(len(params), cells)
        for g, cell in enumerate(owner):
            mix[g, cell] = 1.0 / (uses[cell % self.num_ops] if self.shared else 1)
        inv_uses = torch.tensor(
            [1.0 / max(uses[j], 1) if self.shared else 1.0 for j in range(self.num_ops)]
        )
        if self._flat is not None:
            # l2: one block view per decision; paper: the per-tensor views.
            paper = self.norm == "paper"
            plan["flat_tensors"] = [p.grad for p in params] if paper else blocks
            plan["flat_groups"] = torch.tensor(groups if paper else block_cells, dtype=torch.int64)
            plan["probes"] = probes
        plan.update(
            {
                "params": params,
                "groups": torch.tensor(groups, dtype=torch.int64),
                "num_groups": len(params) if self.norm == "paper" else cells,
                # queued from pinned memory: a new path's plan does not sync either
                "mix": to_device(mix, self.device),
                "inv_uses": to_device(inv_uses, self.device),
                "on_path": to_device(on_path, self.device),
            }
        )
        self._plans[path] = plan
        if len(self._plans) > _CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def step_scores(self, path) -> torch.Tensor:
        """The score of each op on `path` from the current gradients, [rows, K]."""
        return self._step_scores(self._plan(self._check_path(path)))

    def _flat_intact(self, plan) -> bool:
        if self._flat is None:
            return False
        if all(p.grad is view for p, view in plan["probes"]):
            return True
        warnings.warn(
            "PathSampler(flat_grads=True): the gradients of the candidate ops were replaced "
            "(e.g. zero_grad(set_to_none=True)); going on without the flat buffer",
            RuntimeWarning,
            stacklevel=3,
        )
        self._flat = None
        self._plans.clear()
        return False

    def _step_scores(self, plan) -> torch.Tensor:
        rows = self.scores.shape[0]
        if self._flat_intact(plan):
            grads, groups = plan["flat_tensors"], plan["flat_groups"]
        else:
            grads, groups = [p.grad for p in plan["params"]], plan["groups"]
            if any(map(operator.is_, grads, repeat(None))):  # a missing gradient counts as 0
                keep = [i for i, g in enumerate(grads) if g is not None]
                grads, groups = [grads[i] for i in keep], groups[keep]
        if not grads:
            return torch.zeros(rows, self.num_ops, device=self.device)
        if self.norm == "paper":  # groups are the tensors; missing ones stay 0
            norms = ops.grouped_grad_norm(grads, groups, plan["num_groups"])
            return (norms @ plan["mix"]).view(rows, self.num_ops)
        sq = ops.grouped_grad_norm(grads, groups, plan["num_groups"], squared=True)
        return (sq.view(rows, self.num_ops) * plan["inv_uses"]).sqrt_()

    def record(self, path) -> None:
        """Credits the gradients now in ``.grad`` to the ops of `path` (no host sync)."""
        plan = self._plan(self._check_path(path))
        step = self._step_scores(plan)
        if self.rule == "paper":
            # The authors' test is step != 0; > 0 also keeps NaN out (norms are >= 0).
            mask = (step > 0) & (step < math.inf)
            self.scores = torch.where(mask, (self.scores + step) * 0.5, self.scores)
        elif self.rule == "ema":
            mask = torch.isfinite(step) & plan["on_path"]
            mixed = torch.where(self.seen, self.scores.lerp(step, 1 - self.decay), step)
            self.scores = torch.where(mask, mixed, self.scores)
        else:  # mean
            mask = torch.isfinite(step) & plan["on_path"]
            self.count = self.count + mask
            self.scores = torch.where(
                mask, self.scores + (step - self.scores) / self.count.clamp_min(1), self.scores
            )
        self.seen = self.seen | mask
        if self.update == "step":
            # On the scores' device; the host copy is queued here, read by sample().
            _distributed.merge_visited_mean(self.scores, self.seen)
            self._pending.append(HostCopy(self._distribution(self.delta)))

    # -- distribution ---------------------------------------------------------------
    def _distribution(self, delta: float) -> torch.Tensor:
        """The distribution from the current scores, float64 on their device."""
        s = self.scores.detach().double()
        total = s.sum(1, keepdim=True)
        importance = torch.where(total > 0, s / total.clamp_min(1e-300), 1.0 / self.num_ops)
        return delta * importance + (1.0 - delta) / self.num_ops

    def _adopt(self) -> None:
        """update="step": makes the distribution of `lag` records back the current one."""
        while len(self._pending) > self.lag:
            self.probs = self._pending.popleft().wait()

    def _refresh(self, delta: float) -> None:
        _distributed.merge_visited_mean(self.scores, self.seen)
        self.probs = self._distribution(delta).cpu()  # the epoch's one host sync
        self._pending.clear()

    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch`: merges the ranks' scores, rebuilds the distribution
        with this epoch's delta and restarts the scores if the rule says so.
        Calling it again for the epoch already started changes nothing."""
        if epoch == self._applied_epoch:
            return
        self.epoch = int(epoch)
        self.delta = self._delta(self.epoch)
        self._refresh(self.delta)
        if self.restart_every_epoch:
            self.scores = torch.zeros_like(self.scores)
            self.seen = torch.zeros_like(self.seen)
            self.count = torch.zeros_like(self.count)
        self._applied_epoch = self.epoch

    @property
    def probabilities(self) -> torch.Tensor:
        """The distribution the next :meth:`sample` draws from: [1, K] when shared, else
        [decisions, K] (float64, CPU). With ``update="step"`` it may wait for a host copy."""
        self._adopt()
        return self.probs

    def _check_path(self, path) -> tuple:
        path = tuple(int(j) for j in path)
        if len(path) != len(self.decisions):
            raise ValueError(f"a path has {len(self.decisions)} ops, got {len(path)}")
        for k, j in enumerate(path):
            if not 0 <= j < self.num_ops:
                raise ValueError(f"path[{k}] = {j} is not an op index in [0, {self.num_ops})")
        return path

    # -- checkpoints ----------------------------------------------------------------
    def _config(self) -> tuple:
        """What a checkpoint must agree on to be loaded here."""
        return (
            self.shared,
            self.update,
            self.norm,
            self.rule,
            self.decay,
            self.num_ops,
            len(self.decisions),
        )

    def state_dict(self) -> dict:
        return {
            "config": self._config(),
            "scores": self.scores.cpu(),
            "seen": self.seen.cpu(),
            "count": self.count.cpu(),
            "probs": self.probs.clone(),
            "pending": [c.wait().clone() for c in self._pending],
            "seed": self.seed,
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "applied_epoch": self._applied_epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        mine = self._config()
        if tuple(state["config"]) != mine:
            raise ValueError(
                f"state_dict was saved by a PathSampler configured as "
                f"{tuple(state['config'])}, this one is {mine}"
            )
        self.scores = state["scores"].to(self.device)
        self.seen = state["seen"].to(self.device)
        self.count = state["count"].to(self.device)
        self.probs = state["probs"].clone()
        self._pending = deque(HostCopy(t) for t in state.get("pending", []))
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self._applied_epoch = state["applied_epoch"]
        self.delta = self._delta(self.epoch)


def _instances(edge, k):
    if isinstance(edge, nn.ModuleList):
        return [edge]
    if isinstance(edge, Sequence) and edge and all(isinstance(m, nn.ModuleList) for m in edge):
        return list(edge)
    raise TypeError(f"edges[{k}] must be an nn.ModuleList of candidate ops or a list of them")
