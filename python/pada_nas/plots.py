"""PNG plots of KT, GV and the sampling distributions' entropy per epoch, mean and spread
over seeds per sampler."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .config import LABELS  # noqa: E402


def _band(ax, x, ys, label):
    ys = np.asarray(ys, dtype=float)
    mean = np.nanmean(ys, 0)
    ax.plot(x, mean, label=label, marker="o" if len(x) < 15 else None, ms=3)
    if len(ys) > 1:
        ax.fill_between(x, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.15)


def _panel(ax, runs, samplers, series, **labels):
    """One line per sampler: `series(run)` -> (x, y) of each of its runs."""
    for kind in samplers:
        mine = [series(r) for r in runs if r["sampler"] == kind]
        mine = [xy for xy in mine if xy is not None]
        if mine:
            _band(ax, mine[0][0], [y for _, y in mine], LABELS[kind])
    ax.set(**labels)
    ax.grid(alpha=0.3)
    ax.legend()


def _figure(path: Path, panels) -> Path:
    """Writes one row of panels, each ``(series, axis labels)``, to `path`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (series, labels) in zip(axes[0], panels):
        _panel(ax, *series, **labels)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_epoch(key):
    def series(r):
        return (np.arange(1, len(r[key]) + 1), r[key]) if key in r else None

    return series


def _curve(name):
    return lambda r: (r["curves"][name]["epoch"], r["curves"][name]["kt"])


def plot_runs(runs, samplers, set_names, out_dir):
    out = Path(out_dir)
    kt = [
        (
            (runs, samplers, _curve(n)),
            dict(xlabel="epoch", ylabel="Kendall's tau", title=f"KT per epoch ({n})"),
        )
        for n in set_names
    ]
    gv = [
        (
            (runs, samplers, _per_epoch("gv")),
            dict(xlabel="epoch", ylabel="gradient variance", title="GV per epoch", yscale="log"),
        )
    ]
    entropy = [
        (
            (runs, samplers, _per_epoch(f"{what}_entropy")),
            dict(xlabel="epoch", ylabel="entropy / uniform's", title=f"sampling entropy ({what})"),
        )
        for what in ("path", "data")
    ]
    return [
        _figure(out / "kt.png", kt),
        _figure(out / "gv.png", gv),
        _figure(out / "entropy.png", entropy),
    ]
