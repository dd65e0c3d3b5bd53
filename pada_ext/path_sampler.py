"""PathSampler: path importance sampling (the PA of PA&DA) for SPOS supernets."""

import functools
import numbers
import operator
import warnings
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from itertools import repeat
from typing import Optional

import torch

from . import _C, _codes, _dispatch, _distributed, ops
from ._flat_grads import FlatGrads, OffPathFilter, on_accumulate_hooks
from ._transfer import HostCopy, to_device
from .decisions import check_decisions, decisions_from
from .reference.path_record import update_scores_
from .schedules import ScheduleSpec, check_epoch, make_schedule, paper_lag, score_rule

# rule: (decay, restart every epoch)
RULES = {
    "paper": (0.5, True),  # s <- (s + step) / 2 from s = 0 each epoch (the authors')
    "ema": (0.9, False),  # first step stores, then s <- decay s + (1 - decay) step
    "mean": (None, True),  # the mean of the epoch's steps
}
NORMS = ("l2", "paper")
_CACHE_SIZE = 4096
_SEQUENCES = (list, tuple)
_INTS = {int}
_GRAD = operator.attrgetter("grad")


class PathSampler:
    """Draws SPOS paths (one candidate op per decision) from
    ``p = delta * score / sum(score) + (1 - delta) / K`` and learns the scores
    from the gradients of the ops on each trained path.

    Usage::

        decisions = PathSampler.decisions_from(supernet, r"cells\\.\\d+\\.edges\\.(\\d+)")
        sampler = PathSampler(decisions, epochs=epochs)
        for epoch in range(epochs):          # epochs count from 0
            sampler.set_epoch(epoch)
            for x, y in loader:
                path = sampler.sample()      # one op index per decision
                loss = criterion(supernet(x, path), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()             # (after any clipping)
                sampler.record(path)         # fused grouped norms, no host sync

    :meth:`record` reads the gradients of every op on the path and updates the
    scores with one fused kernel (:func:`pada_ext.ops.path_record_`: grouped
    norms, step scores and the rule's update of :attr:`scores` in place), on
    the parameters' device with no host sync. It reads whatever ``.grad``
    holds: call it before the next ``zero_grad``. Each parameter counts once
    per op, so parameters shared by several ops count in each of them.

    Mixed precision with ``torch.amp.GradScaler``: pass ``scaler=`` (and
    ``optimizer=`` when several optimizers share it) and the scores are those
    of the unscaled gradients, whether :meth:`record` comes before or after
    ``scaler.unscale_``/``scaler.step``/``scaler.update`` (the scale is read
    on the device; what the scaler did since the backward is told on the host)::

        sampler = PathSampler(decisions, epochs=epochs, scaler=scaler, optimizer=optimizer)
        ...
            with torch.autocast("cuda", dtype=torch.float16):
                loss = criterion(supernet(x, path), y)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sampler.record(path)

    A step whose gradients overflowed gives non-finite step scores: they are
    left out of the scores and counted in :attr:`skipped_scores` (with or
    without a scaler).

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

    Casts and moves of the supernet after construction (``.half()``,
    ``.to("cuda")``...) are followed: the scores move to the parameters' new
    device at the next :meth:`record`.

    Args:
        edges: the decisions of the search space, in path order. Each is an
            ``nn.ModuleList`` of its K candidate ops (in op order), or a list of
            such ModuleLists that share the decision (e.g. the same edge of every
            cell, as NAS-Bench-201 supernets draw one op per edge for all cells):
            decision-major, ``edges[k][i][j]`` is op j of instance i of decision
            k. :meth:`decisions_from` builds it from module names. Checked: one
            K for all, no candidate list twice, and the same kinds (classes) of
            op at each position in every instance of a decision (which catches
            a cell-major list whenever a cell's edges differ in their
            candidates). Parameter-free ops are allowed: they never score, so
            they keep the uniform share only.
        epochs: number of training epochs (needed by the linear schedules);
            :meth:`set_epoch` then takes 0 .. epochs - 1.
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
        flat_grads: keep the trainable candidate-op parameters' gradients as views
            into one flat buffer (as DDP's bucket views), each op's exclusive
            parameters contiguous, so that ``norm="l2"`` reads a few blocks
            instead of every tensor. Not the default, and rarely worth it: the
            views need in-place zeroing (``optimizer.zero_grad(set_to_none=False)``),
            which leaves the ops off the path a zero ``.grad`` where torch's
            default leaves None; so it needs ``optimizer=`` and hides those
            parameters from each ``optimizer.step()`` (they are the ones whose
            ops got no gradient since the optimizer's last step), which then
            moves exactly what it moves without the buffer (as with
            ``set_to_none=True``), for optimizers that read ``param_groups`` at
            every step (all of torch.optim but LBFGS). ``clip_grad_norm_`` over
            the zero views may round differently in the last bit. Candidate
            parameters must not be shared with modules outside the decisions.
            Frozen parameters are left alone. After a cast or move of the
            module the buffer is rebuilt; if the gradients are replaced (e.g.
            ``set_to_none=True``) :meth:`record` warns once and goes on without
            it (and frees it).
        lag: with ``update="step"``, :meth:`sample` draws from the distribution
            of ``lag`` records back (0: the latest, exactly per step; 1: one
            step stale, so the host never waits for the step it just queued).
            The same on every device.
        optimizer: the optimizer (or a list of them) of the candidate ops:
            needed by ``flat_grads`` (``[]`` if no torch optimizer updates them);
            with ``scaler``, the one whose unscaling tells whether the gradients
            are still scaled (default: any optimizer the scaler has seen).
        scaler: the ``torch.amp.GradScaler`` that scales the loss, if any.
    """

    decisions_from = staticmethod(decisions_from)

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
        optimizer=None,
        scaler=None,
    ):
        self.decisions = check_decisions(edges)
        self.num_ops = len(self.decisions[0][0])
        if epochs is not None and (
            isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1
        ):
            raise ValueError(f"epochs must be an int >= 1 or None, got {epochs!r}")
        if update not in ("epoch", "step"):
            raise ValueError(f"update must be 'epoch' or 'step', got {update!r}")
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
            raise ValueError(f"lag must be an int >= 0, got {lag!r}")
        if lag and update != "step":
            raise ValueError(f"lag applies to update='step' only (update={update!r})")
        self.lag = lag
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.decay, self.restart_every_epoch = score_rule(RULES, rule, decay, "PathSampler")
        self.shared, self.update, self.norm, self.rule = shared, update, norm, rule
        self.epochs = None if epochs is None else int(epochs)
        self._delta = make_schedule(delta, epochs, "delta")
        self._optimizers = _optimizers(optimizer)
        if flat_grads and optimizer is None:
            raise ValueError(
                "flat_grads=True needs optimizer=...: the buffer leaves the ops off the path a "
                "zero .grad, which the optimizer must not see (see the docstring)"
            )
        if scaler is not None and not all(
            hasattr(scaler, a) for a in ("_per_optimizer_states", "_scale", "is_enabled")
        ):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self._scaler = scaler

        # Parameters of (decision k, op j) over all instances, each once, in a fixed order.
        self._params = [
            [
                list({id(p): p for inst in insts for p in inst[j].parameters()}.values())
                for j in range(self.num_ops)
            ]
            for insts in self.decisions
        ]
        devices = {p.device for ps in self._params for plist in ps for p in plist}
        if len(devices) > 1:
            raise ValueError(f"the candidate ops' parameters are on several devices: {devices}")
        self.device = devices.pop() if devices else torch.device("cpu")
        rows = 1 if shared else len(self.decisions)
        # float32 whatever torch's default dtype: the tables path_record_ updates
        self.scores = torch.zeros(rows, self.num_ops, dtype=torch.float32, device=self.device)
        self.visited = torch.zeros(rows, self.num_ops, dtype=torch.bool, device=self.device)
        self._record_keys = _native_keys(self.device)
        # path_record_'s codes of this configuration (decay: ema's; any other
        # rule ignores it)
        self._record_codes = (
            _codes.PATH_NORM[norm],
            _codes.PATH_RULE[rule],
            self.decay if rule == "ema" else 0.0,
        )
        self.count = torch.zeros(rows, self.num_ops, dtype=torch.float32, device=self.device)
        self._skipped = torch.zeros(rows, self.num_ops, dtype=torch.int64, device=self.device)
        self._probs = torch.full((rows, self.num_ops), 1.0 / self.num_ops, dtype=torch.float64)
        self.seed = _distributed.shared_seed(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.epoch = 0
        self.delta = self._delta(0)
        self._applied_epoch = None
        self._warned_no_epoch = False
        self._pending = deque()  # update="step": HostCopy of each record's distribution
        self._plans = OrderedDict()  # path (list mode: its key) -> precomputed grouping, LRU
        # List mode's plan key of op j at decision k: j, or -1 where op j has no
        # parameters at any decision (shared: its count matters wherever it has some).
        with_params = [
            any(self._params[k][j] for k in range(len(self.decisions))) for j in range(self.num_ops)
        ]
        self._key_of = [
            [
                j if (self._params[k][j] if not shared else with_params[j]) else -1
                for j in range(self.num_ops)
            ]
            for k in range(len(self.decisions))
        ]
        self._flat = None
        self._filter = None
        if flat_grads:
            self._flat = FlatGrads(self._params)
            if self._flat.flat is None:
                self._flat = None
            self._filter = OffPathFilter(self._params, self._optimizers)
        # AMP: what the scaler had done when this record's backward began
        self._bwd_states, self._amp_armed = None, True
        self._amp_handles = []
        if scaler is not None:
            me = weakref.ref(self)
            self._amp_handles = on_accumulate_hooks(self._params, lambda _b: _amp_marker(me))

    @classmethod
    def paper(cls, edges, epochs: int, **kwargs):
        """The authors' PA, exactly: one distribution for all edges, updated per
        epoch; per step, the sum of the gradient norms of every parameter tensor
        of each op over the path's cells (in the authors' supernet, whose
        BatchNorms have no affine parameters, those are the conv weights and
        biases; here any parameter of an op counts), divided by the number of
        edges that chose it, averaged into the op's score as (s + step) / 2 from
        0 every epoch; and their timing of delta: the distribution for epoch e
        is built at the end of epoch e - 1 with delta = (e - 1) / epochs
        (epochs 0, 1 uniform)."""
        if epochs is None or epochs <= 0:
            raise ValueError("PathSampler.paper needs the number of epochs")
        return cls(
            edges,
            epochs=epochs,
            delta=paper_lag(epochs),
            shared=True,
            update="epoch",
            norm="paper",
            rule="paper",
            **kwargs,
        )

    # -- sampling -----------------------------------------------------------------
    def sample(self) -> list:
        """One op index per decision, drawn from the current distribution (on the host)."""
        if self._applied_epoch is None and not self._warned_no_epoch:
            self._warned_no_epoch = True
            warnings.warn(
                "PathSampler.sample() before any set_epoch(): the paths stay those of epoch 0 "
                f"(delta = {self.delta}; uniform with the default schedule) until set_epoch(epoch) "
                "is called at the start of every epoch",
                RuntimeWarning,
                stacklevel=2,
            )
        self._adopt()
        d = len(self.decisions)
        if self.shared:
            draw = ops.sample_with_replacement(self._probs[0], d, generator=self.generator)
        else:
            u = torch.rand(d, 1, dtype=torch.float64, generator=self.generator)
            cdf = self._probs.cumsum(1)
            draw = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=self.num_ops - 1)
        return draw.flatten().tolist()

    # -- scores -------------------------------------------------------------------
    def _plan(self, path: tuple):
        """Grouping of the path's parameters for the fused norm, cached per path
        (list mode: per _list_plan key)."""
        if self._flat is None:
            return self._list_plan(self._list_key(path))
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
        flat = self._flat
        tensors, tensor_cells, loose, probes = [], [], [], []  # flat_grads
        for k, j in enumerate(path):
            cell = (0 if self.shared else k) * self.num_ops + j
            if self._params[k][j]:
                on_path.view(-1)[cell] = True
            if flat is not None:
                if flat.blocks[k][j] is not None:
                    tensors.append(flat.blocks[k][j])
                    tensor_cells.append(cell)
                for p in flat.shared[k][j]:
                    tensors.append(p.grad)
                    tensor_cells.append(cell)
                loose += [(p, cell) for p in self._params[k][j] if id(p) not in flat.owned]
                if flat.probes[k][j] is not None:
                    probes.append(flat.probes[k][j])
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
        if flat is not None:
            plan["probes"] = probes
            if self.norm == "l2":  # "paper" needs the norm of every tensor: no blocks
                plan["flat_tensors"] = tensors
                plan["flat_groups"] = torch.tensor(tensor_cells, dtype=torch.int64)
                plan["loose"] = loose  # frozen when the buffer was built: read live
        plan.update(
            {
                "params": params,
                "groups": torch.tensor(groups, dtype=torch.int64),
                "num_groups": len(params) if self.norm == "paper" else cells,
                # queued from pinned memory: a new path's plan does not sync either
                "mix": to_device(mix, self.device),
                "inv_uses": to_device(inv_uses, self.device),
                "on_path": to_device(on_path, self.device),
                # path_record_'s: each parameter's cell, 1 / uses on the path
                "cells": torch.tensor(owner, dtype=torch.int64),
                "weights": to_device(
                    torch.where(on_path, inv_uses.expand(rows, -1), 0.0), self.device
                ),
            }
        )
        self._plans[path] = plan
        if len(self._plans) > _CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _list_plan(self, key: tuple) -> dict:
        """The plan of list mode (no flat buffer), cached per key: the path with
        -1 for the ops that have parameters at no decision (they add nothing, and
        their counts change nothing), so that NB201's 15,625 paths share 729
        plans. A plan joins the per-op parameter lists built at construction; no
        per-element tensor writes, so a miss costs tens of microseconds."""
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        rows = 1 if self.shared else len(self.decisions)
        k_ops = self.num_ops
        cells = rows * k_ops
        uses = [0] * k_ops
        for j in key:
            if j >= 0:
                uses[j] += 1
        params, owner, on = [], [], [False] * cells
        for k, j in enumerate(key):
            if j >= 0 and self._params[k][j]:
                cell = (0 if self.shared else k) * k_ops + j
                on[cell] = True
                params += self._params[k][j]
                owner += [cell] * len(self._params[k][j])
        inv_uses = [1.0 / max(uses[j], 1) if self.shared else 1.0 for j in range(k_ops)]
        # path_record_'s: each tensor's cell, and 1 / uses on the path, 0 off it
        weights = [inv_uses[c % k_ops] if on[c] else 0.0 for c in range(cells)]
        plan = {
            "params": params,
            "on_path": to_device(torch.tensor(on).view(rows, k_ops), self.device),
            "cells": torch.tensor(owner, dtype=torch.int64),
            "weights": to_device(torch.tensor(weights).view(rows, k_ops), self.device),
        }
        if self.norm == "paper":
            # step = norms @ mix: each tensor's norm into its op's cell, divided
            # by the number of decisions that chose the op (one kernel, no scatter).
            mix = torch.zeros(len(params), cells)
            scale = [1.0 / uses[c % k_ops] if self.shared else 1.0 for c in owner]
            mix[torch.arange(len(params)), torch.tensor(owner, dtype=torch.int64)] = torch.tensor(
                scale
            )
            plan["groups"] = torch.arange(len(params))
            plan["num_groups"] = len(params)
            plan["mix"] = to_device(mix, self.device)
        else:
            plan["groups"] = torch.tensor(owner, dtype=torch.int64)
            plan["num_groups"] = cells
            plan["inv_uses"] = to_device(torch.tensor(inv_uses), self.device)
        self._plans[key] = plan
        if len(self._plans) > _CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _list_key(self, path) -> tuple:
        """The plan key of `path` (see _list_plan), checking it; ints in range
        take a path of C calls, anything else _check_path's."""
        if (
            type(path) in _SEQUENCES
            and len(path) == len(self._key_of)
            and set(map(type, path)) == _INTS
            and min(path) >= 0
        ):
            try:
                return tuple(map(list.__getitem__, self._key_of, path))
            except IndexError:
                pass  # an op index out of range: _check_path names it
        return tuple(map(list.__getitem__, self._key_of, self._check_path(path)))

    def _list_step(self, plan) -> torch.Tensor:
        """_step_scores in list mode: the same values, fewer calls."""
        groups = plan["groups"]
        grads = list(map(_GRAD, plan["params"]))
        if any(map(operator.is_, grads, repeat(None))):  # a missing gradient counts as 0
            keep = [i for i, g in enumerate(grads) if g is not None]
            grads, groups = [grads[i] for i in keep], groups[keep]
        if not grads:
            return torch.zeros(self.scores.shape[0], self.num_ops, device=self.device)
        # Only where path_record_ has no compiled kernel or the gradients are
        # float64 (record's fallback): ops' own dispatch serves both.
        squared = self.norm != "paper"
        out = _grouped_norm(grads, groups, plan["num_groups"], squared=squared)
        if not squared:  # groups are the tensors; missing ones stay 0
            return (out @ plan["mix"]).view(self.scores.shape[0], self.num_ops)
        return (out.view(self.scores.shape[0], self.num_ops) * plan["inv_uses"]).sqrt_()

    def step_scores(self, path) -> torch.Tensor:
        """The score of each op on `path` from the current gradients, [rows, K]
        (unscaled when a ``scaler`` was given)."""
        path = self._check_path(path)
        plan = self._follow_parameters(path, self._plan(path))
        return self._unscaled(self._step_scores(plan))

    def _follow_parameters(self, path, plan):
        """Before reading the gradients: follows casts and moves of the
        parameters (rebuilding the flat buffer, moving the scores)."""
        if self._flat is not None and "probes" in plan:
            state = FlatGrads.state(plan["probes"])
            if state == "moved":  # a cast or move (Module._apply swaps the storage)
                try:
                    self._flat.build()
                except ValueError as e:
                    self._drop_flat(f"the candidate ops were cast or moved and {e}")
            elif state == "replaced":
                self._drop_flat(
                    "the gradients of the candidate ops were replaced "
                    "(e.g. zero_grad(set_to_none=True))"
                )
            if state != "ok":
                self._plans.clear()
                plan = self._plan(path)
        params = plan["params"]
        if params and params[0].device != self.device:
            self._move(params[0].device)
            plan = self._plan(path)
        return plan

    def _drop_flat(self, why: str) -> None:
        warnings.warn(
            f"PathSampler(flat_grads=True): {why}; going on without the flat buffer",
            RuntimeWarning,
            stacklevel=4,
        )
        self._flat = None  # with every plan that holds views into it: the buffer is freed
        self._plans.clear()

    def _move(self, device) -> None:
        """The sampler's tensors to the parameters' new device."""
        self.device = torch.device(device)
        self._record_keys = _native_keys(self.device)
        self.scores = self.scores.to(self.device)
        self.visited = self.visited.to(self.device)
        self.count = self.count.to(self.device)
        self._skipped = self._skipped.to(self.device)
        self._plans.clear()

    def _step_scores(self, plan) -> torch.Tensor:
        rows = self.scores.shape[0]
        if self._flat is not None and "flat_tensors" in plan:
            grads, groups = plan["flat_tensors"], plan["flat_groups"]
            if plan["loose"]:
                live = [(p.grad, c) for p, c in plan["loose"] if p.grad is not None]
                grads = grads + [g for g, _ in live]
                groups = torch.cat([groups, torch.tensor([c for _, c in live], dtype=torch.int64)])
        else:
            grads, groups = [p.grad for p in plan["params"]], plan["groups"]
            if any(map(operator.is_, grads, repeat(None))):  # a missing gradient counts as 0
                keep = [i for i, g in enumerate(grads) if g is not None]
                grads, groups = [grads[i] for i in keep], groups[keep]
        if not grads:
            return torch.zeros(rows, self.num_ops, device=self.device)
        if self.norm == "paper":  # groups are the tensors; missing ones stay 0
            norms = _grouped_norm(grads, groups, plan["num_groups"], squared=False)
            return (norms @ plan["mix"]).view(rows, self.num_ops)
        sq = _grouped_norm(grads, groups, plan["num_groups"], squared=True)
        return (sq.view(rows, self.num_ops) * plan["inv_uses"]).sqrt_()

    def _unscaled(self, step: torch.Tensor) -> torch.Tensor:
        """Divides by the GradScaler's scale if the gradients are still scaled."""
        scale = self._grad_scale()
        return step if scale is None else step / scale

    def _grad_scale(self) -> Optional[torch.Tensor]:
        """The GradScaler's scale on the scores' device if the gradients are
        still scaled, else None."""
        sc = self._scaler
        if sc is None or not sc.is_enabled() or sc._scale is None:
            return None
        states = sc._per_optimizer_states
        if states is not self._bwd_states:
            return None  # update() ran after this backward: step() unscaled the gradients
        mine = (
            [states[id(o)] for o in self._optimizers if id(o) in states]
            if self._optimizers
            else list(states.values())
        )
        if any(s["stage"].name != "READY" for s in mine):
            return None  # unscale_() or step() already ran
        return sc._scale.to(self.device, non_blocking=True)

    def _spent_steps(self) -> None:
        """AMP: a step that the scaler skipped spends the gradients as a taken one does."""
        sc = self._scaler
        if self._filter is None or sc is None:
            return
        states = sc._per_optimizer_states
        if states is not self._bwd_states:
            self._filter.forget()
            return
        for o in self._optimizers:
            if id(o) in states and states[id(o)]["stage"].name == "STEPPED":
                self._filter.forget(o)

    def _tables(self) -> tuple:
        """path_record_'s in-place tables, then its norm, rule and decay arguments."""
        return (self.scores, self.visited, self.count, self._skipped, *self._record_codes)

    def record(self, path) -> None:
        """Credits the gradients now in ``.grad`` to the ops of `path` (no host sync)."""
        if self._flat is None:
            # List mode, the usual one: every step's work is here, in as few
            # Python calls as the results allow: the plan, the gradients, one op.
            key = self._list_key(path)
            plan = self._list_plan(key)
            params = plan["params"]
            if params and params[0].device != self.device:  # a move or cast of the supernet
                self._move(params[0].device)
                plan = self._list_plan(key)
            scale = None if self._scaler is None else self._grad_scale()
            if self._record_keys is not None and not (params and params[0].dtype is _F64):
                # The compiled kernel on the .grad of each parameter, read in
                # C++ (csrc/python_path_record.cpp); the kernel checks the arguments.
                _record_params(params, plan["cells"], plan["weights"], *self._tables(), scale)
            else:  # float64 gradients, or no compiled kernel for the device
                step = self._list_step(plan)
                if scale is not None:
                    step = step / scale
                self._update(step, plan["on_path"])
            if self._filter is not None:  # flat_grads was dropped: its filter stays
                self._spent_steps()
        else:
            path = self._check_path(path)
            plan = self._follow_parameters(path, self._plan(path))
            grads, cells = self._flat_record_args(plan)
            scale = None if self._scaler is None else self._grad_scale()
            if self._record_keys is not None and not (grads and grads[0].dtype is _F64):
                _RECORD.redispatch(
                    self._record_keys, grads, cells, plan["weights"], *self._tables(), scale
                )
            else:
                step = self._step_scores(plan)
                self._update(step if scale is None else step / scale, plan["on_path"])
            self._spent_steps()
        self._amp_armed = True
        if self.update == "step":
            # On the scores' device; the host copy is queued here, read by sample().
            _distributed.merge_visited_mean(self.scores, self.visited)
            self._pending.append(HostCopy(self._distribution(self.delta)))

    def _flat_record_args(self, plan) -> tuple:
        """path_record_'s gradients and cells with flat_grads: l2 reads the
        buffer's blocks (and the loose parameters' gradients), paper every
        parameter's gradient."""
        if "flat_tensors" in plan:
            loose = plan["loose"]
            grads = plan["flat_tensors"] + [p.grad for p, _ in loose]
            cells = plan["flat_groups"]
            if loose:
                cells = torch.cat([cells, torch.tensor([c for _, c in loose], dtype=torch.int64)])
            return grads, cells
        return [p.grad for p in plan["params"]], plan["cells"]

    def _update(self, step: torch.Tensor, on_path: torch.Tensor) -> None:
        """The rule's update of the tables by `step`, with torch ops (as path_record_)."""
        update_scores_(
            step,
            on_path,
            self.scores,
            self.visited,
            self.count,
            self._skipped,
            self._record_codes[1],
            self.decay,
        )

    @property
    def skipped_scores(self) -> int:
        """How many step scores of ops on a recorded path were not finite (an
        overflowed step) and left out (a host read)."""
        return int(self._skipped.sum())

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
            self._probs = self._pending.popleft().wait()

    def _refresh(self, delta: float) -> None:
        _distributed.merge_visited_mean(self.scores, self.visited)
        self._probs = self._distribution(delta).cpu()  # the epoch's one host sync
        self._pending.clear()

    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch`: merges the ranks' scores, rebuilds the distribution
        with this epoch's delta and restarts the scores if the rule says so.
        Calling it again for the epoch already started changes nothing.
        Epochs count from 0: ``0 <= epoch < epochs``; others raise."""
        epoch = check_epoch(epoch, self.epochs, "PathSampler.set_epoch")
        if epoch == self._applied_epoch:
            return
        self.epoch = epoch
        self.delta = self._delta(self.epoch)
        self._refresh(self.delta)
        if self.restart_every_epoch:
            self.scores = torch.zeros_like(self.scores)
            self.visited = torch.zeros_like(self.visited)
            self.count = torch.zeros_like(self.count)
        self._applied_epoch = self.epoch

    @property
    def probabilities(self) -> torch.Tensor:
        """The distribution the next :meth:`sample` draws from: [1, K] when shared, else
        [decisions, K] (float64, CPU). With ``update="step"`` it may wait for a host copy."""
        self._adopt()
        return self._probs

    def _check_path(self, path) -> tuple:
        if isinstance(path, torch.Tensor):
            path = path.tolist()
        d = len(self.decisions)
        if len(path) != d:
            raise ValueError(f"a path has {d} ops (one per decision), got {len(path)}")
        out = []
        for k, j in enumerate(path):
            if isinstance(j, bool) or isinstance(j, float):
                raise TypeError(f"path[{k}] = {j!r} is not an op index (an int)")
            try:
                j = operator.index(j)
            except TypeError:
                raise TypeError(f"path[{k}] = {j!r} is not an op index (an int)") from None
            if not 0 <= j < self.num_ops:
                raise ValueError(
                    f"path[{k}] = {j} is not an op index of decision {k}: [0, {self.num_ops})"
                )
            out.append(j)
        return tuple(out)

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
            # Copies: the live tables are updated in place (merges, records).
            "scores": self.scores.detach().to("cpu", copy=True),
            "visited": self.visited.detach().to("cpu", copy=True),
            "count": self.count.detach().to("cpu", copy=True),
            "probs": self._probs.clone(),
            "pending": [c.wait().clone() for c in self._pending],
            "seed": self.seed,
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "applied_epoch": self._applied_epoch,
            "skipped": self._skipped.detach().to("cpu", copy=True),
        }

    def load_state_dict(self, state: dict) -> None:
        mine = self._config()
        if tuple(state["config"]) != mine:
            raise ValueError(
                f"state_dict was saved by a PathSampler configured as "
                f"{tuple(state['config'])}, this one is {mine}"
            )
        # float32 and contiguous, as path_record_ takes the tables
        self.scores = state["scores"].to(self.device, torch.float32, copy=True).contiguous()
        # "seen" is the key of state_dicts saved before the samplers shared one vocabulary.
        visited = state["visited" if "visited" in state else "seen"]
        self.visited = visited.to(self.device, torch.bool, copy=True).contiguous()
        self.count = state["count"].to(self.device, torch.float32, copy=True).contiguous()
        self._probs = state["probs"].clone()
        self._pending = deque(HostCopy(t) for t in state.get("pending", []))
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self._applied_epoch = state["applied_epoch"]
        self.delta = self._delta(self.epoch)
        if "skipped" in state:
            self._skipped = state["skipped"].to(self.device, torch.int64, copy=True).contiguous()
        else:
            self._skipped = torch.zeros_like(self.count, dtype=torch.int64)


def _optimizers(optimizer) -> list:
    if optimizer is None:
        return []
    opts = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
    for i, o in enumerate(opts):
        if not isinstance(o, torch.optim.Optimizer):
            raise TypeError(f"optimizer[{i}] is a {type(o).__name__}, not a torch.optim.Optimizer")
    return opts


def _amp_marker(me):
    def hook(_param):
        s = me()
        if s is not None and s._amp_armed:  # the first gradient of this record's backward
            s._amp_armed = False
            s._bwd_states = s._scaler._per_optimizer_states

    return hook


_record_params = _C.path_record_params
_RECORD = torch.ops.pada.path_record_.default
_F64 = torch.float64


@functools.cache
def _native_keys(device: torch.device):
    """The dispatch keys of the compiled path_record_ on `device`, or None."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    if key is None or not _dispatch.has_native_kernel("path_record_", key):
        return None
    return torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))


def _grouped_norm(grads, groups, num_groups, squared):
    """ops.grouped_grad_norm, with float64 gradients (which it does not take)
    reduced in float64 by plain torch ops (still no host sync)."""
    if grads[0].dtype != torch.float64:
        return ops.grouped_grad_norm(grads, groups, num_groups, squared=squared)
    sq = torch.stack(torch._foreach_norm(grads)).square()
    out = torch.zeros(num_groups, dtype=torch.float64, device=sq.device)
    out.index_add_(0, to_device(groups, sq.device), sq)
    return (out if squared else out.sqrt()).float()
