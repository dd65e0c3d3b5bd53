"""IndexedDataset: makes every sample carry its dataset index."""

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that item ``i`` comes with ``i`` appended.

    ``(x, y)`` becomes ``(x, y, i)``; a non-tuple item ``x`` becomes ``(x, i)``.
    The index is what :class:`ImportanceSampler` needs to credit each sample's
    score to the right entry. It is a host int, so a ``DataLoader`` batch holds
    the indices as a CPU int64 tensor (pinned with ``pin_memory=True``): pass it
    as it is; the sampler queues its copy to the scores' device without a sync.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        if isinstance(item, (tuple, list)):
            return (*item, index)
        return item, index
