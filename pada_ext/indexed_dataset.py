"""IndexedDataset: makes every sample carry its dataset index."""

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that item ``i`` comes with ``i`` appended.

    ``(x, y)`` becomes ``(x, y, i)``; a non-tuple item ``x`` becomes ``(x, i)``.
    The index is what :class:`ImportanceSampler` needs to credit each sample's
    score to the right entry.
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
