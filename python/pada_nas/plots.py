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


def plot_runs(runs, samplers, set_names, out_dir):
    out = Path(out_dir)
    written = []
    fig, axes = plt.subplots(1, len(set_names), figsize=(5 * len(set_names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], set_names):
        for kind in samplers:
            mine = [r for r in runs if r["sampler"] == kind]
            x = mine[0]["curves"][name]["epoch"]
            _band(ax, x, [r["curves"][name]["kt"] for r in mine], LABELS[kind])
        ax.set(xlabel="epoch", ylabel="Kendall's tau", title=f"KT per epoch ({name})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "kt.png", dpi=110)
    plt.close(fig)
    written.append(out / "kt.png")

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind in samplers:
        mine = [r for r in runs if r["sampler"] == kind]
        x = np.arange(1, len(mine[0]["gv"]) + 1)
        _band(ax, x, [r["gv"] for r in mine], LABELS[kind])
    ax.set(xlabel="epoch", ylabel="gradient variance", title="GV per epoch", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gv.png", dpi=110)
    plt.close(fig)
    written.append(out / "gv.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, what in zip(axes, ("path_entropy", "data_entropy"), ("paths", "data")):
        for kind in samplers:
            mine = [r for r in runs if r["sampler"] == kind and key in r]
            if not mine:
                continue
            x = np.arange(1, len(mine[0][key]) + 1)
            _band(ax, x, [r[key] for r in mine], LABELS[kind])
        ax.set(xlabel="epoch", ylabel="entropy / uniform's", title=f"sampling entropy ({what})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "entropy.png", dpi=110)
    plt.close(fig)
    written.append(out / "entropy.png")
    return written
