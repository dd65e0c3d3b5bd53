"""Host <-> device copies for the samplers' per-step path, without host syncs.

A plain ``cpu_tensor.to("cuda")`` copies from pageable memory, which CUDA does
synchronously (torch's sync debug mode flags it). Staging through pinned memory
and copying with ``non_blocking=True`` queues the copy on the stream instead;
torch's pinned-memory allocator keeps the staging block alive until the copy
has run, so the source may be freed at once.
"""

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; a CPU -> CUDA copy is queued from pinned memory (no host sync)."""
    device = torch.device(device)
    if t.device == device or device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    if not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class HostCopy:
    """A device tensor's copy into pinned host memory, queued now, read later.

    :meth:`wait` blocks the host until the copy (and what the stream ran before
    it) has finished: an event wait, not a device or stream synchronisation.
    """

    def __init__(self, t: torch.Tensor):
        if t.device.type != "cuda":
            self.host, self.event = t.detach().clone(), None
            return
        self.host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        self.host.copy_(t.detach(), non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record(torch.cuda.current_stream(t.device))

    def wait(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        return self.host
