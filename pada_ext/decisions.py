"""The decisions of a supernet for PathSampler: building them and checking them.

A decision is one choice of the path: K candidate ops, drawn as one. It has one
or more instances, each an ``nn.ModuleList`` of its K candidates in op order
(e.g. edge k of every cell, when every cell runs the same op on edge k).
"""

import re
from collections.abc import Sequence

from torch import nn


def decisions_from(model: nn.Module, pattern: str) -> list:
    """The decisions of `model`, from the names of its candidate lists.

    Args:
        model: the supernet.
        pattern: a regular expression, matched in full against the names of
            ``model.named_modules()``; each module it matches must be an
            ``nn.ModuleList`` of candidate ops. With a capturing group, the
            matches whose group captured the same text are the instances of one
            decision (the same op for all of them); without one, each match is a
            decision of its own. Decisions come in the order of their first match
            (the modules' registration order), instances in module order.

    Example: cells ``model.cells[c]`` with ``edges = nn.ModuleList`` of
    ``nn.ModuleList``\\ s of candidates, one op per edge shared by all cells::

        PathSampler.decisions_from(model, r"cells\\.\\d+\\.edges\\.(\\d+)")

    gives one decision per edge (in edge order) with one instance per cell.
    """
    regex = re.compile(pattern)
    if regex.groups > 1:
        raise ValueError(f"pattern may have at most one capturing group, got {regex.groups}")
    groups: dict = {}
    for name, module in model.named_modules():
        match = regex.fullmatch(name)
        if match is None:
            continue
        if not isinstance(module, nn.ModuleList):
            raise TypeError(
                f"pattern {pattern!r} matches {name!r}, a {type(module).__name__}, "
                "not an nn.ModuleList of candidate ops"
            )
        key = match.group(1) if regex.groups else name
        groups.setdefault(key, []).append(module)
    if not groups:
        raise ValueError(f"pattern {pattern!r} matches no module name of the model")
    return list(groups.values())


def check_decisions(edges: Sequence) -> list:
    """[decision][instance] -> nn.ModuleList, after checking the structure.

    Checks: every instance is an ``nn.ModuleList``; all have the same number of
    candidates; no candidate list appears twice (ops and
    parameters may be shared); and the instances of one
    decision have the same kind of op (class) at each position. The last check
    rejects a transposed (cell-major) list whenever a cell's edges differ in
    their candidates; where every edge has the same kinds of candidates (as in
    NAS-Bench-201) no check on the list alone can tell the orientations apart,
    so build such lists with :func:`decisions_from`.
    """
    if isinstance(edges, nn.Module) and not isinstance(edges, nn.ModuleList):
        raise TypeError(f"edges must be a list of decisions, got a {type(edges).__name__}")
    decisions = [_instances(e, k) for k, e in enumerate(edges)]
    if not decisions:
        raise ValueError("PathSampler needs at least one decision (edge)")
    widths = {len(m) for inst in decisions for m in inst}
    if len(widths) != 1:
        raise ValueError(f"every edge needs the same number of candidate ops, got {widths}")
    if widths.pop() < 1:
        raise ValueError("an edge has no candidate op")
    seen = {}
    for k, insts in enumerate(decisions):
        kinds = [type(op) for op in insts[0]]
        for i, inst in enumerate(insts):
            if id(inst) in seen:
                raise ValueError(
                    f"edges[{k}][{i}] is the candidate list already given as {seen[id(inst)]}: "
                    "each belongs to one decision, once"
                )
            seen[id(inst)] = f"edges[{k}][{i}]"
            got = [type(op) for op in inst]
            if got != kinds:
                j = next(j for j, (a, b) in enumerate(zip(got, kinds)) if a is not b)
                raise ValueError(
                    f"edges[{k}][{i}]: op {j} is a {got[j].__name__} but instance 0 of the same "
                    f"decision has a {kinds[j].__name__} there; the instances of a decision "
                    "list the same candidates in the same order (is the list transposed, one "
                    "entry per cell instead of one per edge? see PathSampler.decisions_from)"
                )
    return decisions


def _instances(edge, k):
    if isinstance(edge, nn.ModuleList) and not all(isinstance(m, nn.ModuleList) for m in edge):
        return [edge]
    if isinstance(edge, (Sequence, nn.ModuleList)) and len(edge):
        if all(isinstance(m, nn.ModuleList) for m in edge):
            return list(edge)
    raise TypeError(f"edges[{k}] must be an nn.ModuleList of candidate ops or a list of them")
