"""A NAS-Bench-201-style search space and weight-sharing supernet.

Cells of 4 nodes and 6 edges; each edge applies one of 5 ops. Node i sums
its inputs from every earlier node; the cell outputs node 3. The supernet is
a stem, three stages of `cells` cells at C, 2C and 4C channels joined by
residual reduction blocks, and a classifier. One path (an op per edge) is
shared by every cell, as in the PA&DA authors' code: 5^6 = 15,625 paths.
BatchNorm keeps no running statistics, so evaluation uses batch statistics.
"""

import itertools

from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_EDGES = 6
# (target node, source node) of each edge, in path order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
CONV_OPS = (2, 3)


def all_paths(ops=None):
    """Every path over the given op indices (default: all), in lexicographic order."""
    ops = range(len(OPS)) if ops is None else ops
    return [list(p) for p in itertools.product(ops, repeat=NUM_EDGES)]


def path_str(path):
    nodes = [[] for _ in range(4)]
    for (dst, src), op in zip(EDGES, path):
        nodes[dst].append(f"{OPS[op]}~{src}")
    return "+".join("|" + "|".join(n) + "|" for n in nodes[1:])


def bn(c, affine=False):
    return nn.BatchNorm2d(c, affine=affine, track_running_stats=False)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (with bias, as the BN is not affine) -> BatchNorm."""

    def __init__(self, c_in, c_out, kernel, stride=1, affine=False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=not affine),
            bn(c_out, affine),
        )


def make_op(name, c):
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(name)


class Cell(nn.Module):
    def __init__(self, c):
        super().__init__()
        # edges[k][j]: op j of edge k.
        self.edges = nn.ModuleList(nn.ModuleList(make_op(o, c) for o in OPS) for _ in EDGES)

    def forward(self, x, path):
        nodes = [x]
        for dst in (1, 2, 3):
            nodes.append(
                sum(
                    self.edges[k][path[k]](nodes[src])
                    for k, (d, src) in enumerate(EDGES)
                    if d == dst
                )
            )
        return nodes[3]


class ResBlock(nn.Module):
    """Residual reduction block between stages (stride 2, doubles channels)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.a = ReLUConvBN(c_in, c_out, 3, stride=2, affine=True)
        self.b = ReLUConvBN(c_out, c_out, 3, affine=True)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x, path=None):
        return self.b(self.a(x)) + self.shortcut(x)


class Supernet(nn.Module):
    """Weight-sharing supernet: ``model(x, path)`` runs one path.

    Args:
        channels: C, the width of the first stage.
        cells: cells per stage (5 in NAS-Bench-201 and the authors' code).
        num_classes: classifier outputs.
        in_channels: image channels (3 for CIFAR, 1 for the digits).
    """

    def __init__(self, channels=16, cells=5, num_classes=10, in_channels=3):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), bn(c, True))
        layers = []
        for stage in range(3):
            if stage:
                layers.append(ResBlock(c, 2 * c))
                c *= 2
            layers.extend(Cell(c) for _ in range(cells))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(bn(c, True), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    @property
    def cells(self):
        return [m for m in self.layers if isinstance(m, Cell)]

    def decisions(self):
        """The path's decisions for pada_ext.PathSampler: edge k of every cell (the
        same as ``PathSampler.decisions_from(self, r"layers\\.\\d+\\.edges\\.(\\d+)")``)."""
        return [[cell.edges[k] for cell in self.cells] for k in range(NUM_EDGES)]

    def forward(self, x, path):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, path)
        return self.classifier(self.head(x))
