"""PathSampler's flat gradient buffer, and what keeps it invisible to the optimizer.

FlatGrads: the trainable parameters of the candidate ops get ``.grad`` views into
one buffer, each op's exclusive parameters in one contiguous block, so that a
step's score reads a few blocks. A parameter of several ops has one view, after
the blocks. Frozen parameters get nothing.

OffPathFilter: with in-place zeroing (which the views need) the ops off the path
keep a zero ``.grad`` where torch's default ``zero_grad()`` leaves None, and
momentum, weight decay or Adam would move them. So during ``optimizer.step()``
(step pre/post hooks) the optimizer's parameter lists leave out the parameters
whose ops received no gradient since the last step (told by a post-accumulate
hook on one parameter per op): it sees what it sees without the buffer.
"""

import weakref
from collections import OrderedDict

import torch

_CACHE_SIZE = 1024


def trainable_owners(block_params):
    """id(p) -> (p, [block ids]) over the trainable parameters; block b = k * K + j."""
    owners = {}
    width = len(block_params[0])
    for k, ps in enumerate(block_params):
        for j, plist in enumerate(ps):
            for p in plist:
                if p.requires_grad:
                    owners.setdefault(id(p), (p, []))[1].append(k * width + j)
    return owners


def on_accumulate_hooks(block_params, make_hook) -> list:
    """Post-accumulate-grad hooks, one per op block on one of its trainable
    parameters (an exclusive one where it has one): ``make_hook(blocks)`` for
    the blocks that parameter stands for. Returns the handles."""
    owners = trainable_owners(block_params)
    width = len(block_params[0])
    probes = {}
    for k, ps in enumerate(block_params):
        for j, plist in enumerate(ps):
            mine = [p for p in plist if id(p) in owners]
            if mine:
                probe = next((p for p in mine if len(owners[id(p)][1]) == 1), mine[0])
                probes.setdefault(id(probe), (probe, []))[1].append(k * width + j)
    return [
        probe.register_post_accumulate_grad_hook(make_hook(tuple(blocks)))
        for probe, blocks in probes.values()
    ]


class FlatGrads:
    def __init__(self, block_params):
        self.block_params = block_params
        self.build()

    def build(self):
        """(Re)builds the buffer on the parameters' current dtype and device,
        with their current gradients; ValueError where they differ."""
        owners = trainable_owners(self.block_params)
        params = [p for p, _ in owners.values()]
        self.owned = set(owners)
        self.flat = None
        width = len(self.block_params[0])
        self.blocks = [[None] * width for _ in self.block_params]
        self.shared = [[[] for _ in range(width)] for _ in self.block_params]
        self.probes = [[None] * width for _ in self.block_params]
        if not params:
            return
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(
                "flat_grads needs one dtype and one device for all trainable candidate-op "
                f"parameters, got {sorted(map(str, dtypes))} on {sorted(map(str, devices))}"
            )
        layout, offset = [], 0  # (param, offset)
        spans = [[None] * width for _ in self.block_params]
        for k, ps in enumerate(self.block_params):
            for j, plist in enumerate(ps):
                start = offset
                for p in plist:
                    if id(p) in owners and len(owners[id(p)][1]) == 1:
                        layout.append((p, offset))
                        offset += p.numel()
                spans[k][j] = (start, offset)
        for p, blocks in owners.values():
            if len(blocks) > 1:
                layout.append((p, offset))
                offset += p.numel()
        flat = torch.zeros(offset, dtype=dtypes.pop(), device=devices.pop())
        for p, at in layout:
            view = flat[at : at + p.numel()].view_as(p)
            if p.grad is not None:
                view.copy_(p.grad)
            p.grad = view
        for k, ps in enumerate(self.block_params):
            for j, plist in enumerate(ps):
                start, end = spans[k][j]
                if end > start:
                    self.blocks[k][j] = flat[start:end]
                mine = [p for p in plist if id(p) in owners]
                self.shared[k][j] = [p for p in mine if len(owners[id(p)][1]) > 1]
                if mine:
                    probe = next((p for p in mine if len(owners[id(p)][1]) == 1), mine[0])
                    self.probes[k][j] = (probe, probe.grad, probe.grad.data_ptr())
        self.flat = flat

    @staticmethod
    def state(probes) -> str:
        """'ok'; 'moved' (the same .grad objects, new storage: a cast or a move of
        the module); or 'replaced' (other .grad objects, e.g. set_to_none)."""
        for p, view, ptr in probes:
            if p.grad is not view:
                return "replaced"
            if view.data_ptr() != ptr:
                return "moved"
        return "ok"


class OffPathFilter:
    """Hides from `optimizers`' steps the parameters of ops that got no gradient."""

    def __init__(self, block_params, optimizers):
        owners = trainable_owners(block_params)
        self.blocks_of = {i: frozenset(b) for i, (_, b) in owners.items()}
        # per optimizer: the blocks that got a gradient since its last step
        self.used = {id(opt): set() for opt in optimizers}
        self.saved, self.cache = {}, {}
        me = weakref.ref(self)
        self.handles = on_accumulate_hooks(block_params, lambda blocks: _marker(me, blocks))
        for opt in optimizers:
            self.handles.append(opt.register_step_pre_hook(_pre(me)))
            self.handles.append(opt.register_step_post_hook(_post(me)))

    def mark(self, blocks):
        for used in self.used.values():
            used.update(blocks)

    def forget(self, opt=None):
        """A step of `opt` (default: all) was taken or skipped: its gradients are spent."""
        for key in [id(opt)] if opt is not None else list(self.used):
            if key in self.used:
                self.used[key].clear()

    def _visible(self, p, used) -> bool:
        blocks = self.blocks_of.get(id(p))
        return blocks is None or not blocks.isdisjoint(used)

    def hide(self, opt):
        self.show(opt)  # a step that raised left its lists hidden
        groups = opt.param_groups
        key = (frozenset(self.used[id(opt)]),) + tuple(
            (id(g["params"]), len(g["params"])) for g in groups
        )
        cache = self.cache.setdefault(id(opt), OrderedDict())
        lists = cache.get(key)
        if lists is None:
            used = key[0]
            lists = [[p for p in g["params"] if self._visible(p, used)] for g in groups]
            cache[key] = lists
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        self.saved[id(opt)] = (opt, [g["params"] for g in groups])
        for g, kept in zip(groups, lists):
            g["params"] = kept

    def show(self, opt=None):
        for key in [id(opt)] if opt is not None else list(self.saved):
            entry = self.saved.pop(key, None)
            if entry is not None:
                for g, full in zip(entry[0].param_groups, entry[1]):
                    g["params"] = full

    def remove(self):
        self.show()
        for h in self.handles:
            h.remove()
        self.handles = []


def _weak_hook(me, call):
    """A hook that runs ``call(filter, *hook_args)`` while the filter ``me()`` lives
    (the hooks must not keep it alive)."""

    def hook(*args):
        f = me()
        if f is not None:
            call(f, *args)

    return hook


def _marker(me, blocks):
    return _weak_hook(me, lambda f, _param: f.mark(blocks))


def _pre(me):
    return _weak_hook(me, lambda f, opt, _args, _kwargs: f.hide(opt))


def _post(me):
    def show_and_forget(f, opt, _args, _kwargs):
        f.show(opt)
        f.forget(opt)

    return _weak_hook(me, show_and_forget)
