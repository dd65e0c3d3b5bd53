"""The comparison: SPOS vs DA vs PA vs PA&DA, several seeds each, same budget."""

import json
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import torch

from . import train as training
from .config import LABELS, PRESET_GROUND_TRUTH, load_split
from .evaluate import RANK_SCORES
from .stats import paired_difference

BASELINE = "spos"
METRICS = {"kt": "KT", "p_top5": "P@Top5%"}

GROUND_TRUTH_DIR = Path(__file__).resolve().parent.parent / "ground_truth"


def default_ground_truth(preset: str) -> Path:
    """The committed ground truth a preset ranks against (the small one's for the rest)."""
    return GROUND_TRUTH_DIR / PRESET_GROUND_TRUTH.get(preset, PRESET_GROUND_TRUTH["small"])


def load_ground_truth(path) -> dict:
    """``{set name: (paths, mean test accuracy over the ground-truth seeds)}`` and the file."""
    with open(path) as f:
        gt = json.load(f)
    sets = {}
    for r in gt["results"]:
        paths, truth = sets.setdefault(r["set"], ([], []))
        paths.append(list(r["path"]))
        truth.append(sum(r["test_acc"]) / len(r["test_acc"]))
    return sets, gt


def config_from_ground_truth(gt: dict) -> dict:
    """The supernet and data settings that must match the ground truth's."""
    c = gt.get("config", {})
    keys = ("dataset", "train_size", "test_images", "sigma", "split_seed", "channels", "cells")
    return {k: c[k] for k in keys if k in c}


def mean_std(values):
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list, samplers, set_names) -> dict:
    summary = {}
    for kind in samplers:
        mine = [r for r in runs if r["sampler"] == kind]
        row = {"seeds": [r["seed"] for r in mine]}
        for name in set_names:
            for key in ("kt", "p_top5"):
                row[f"{name}_{key}"] = mean_std([r["final"][name][key] for r in mine])
                # the same ranking by each score (the reported one is cfg.rank_by's)
                for score in RANK_SCORES:
                    row[f"{name}_{key}_by_{score}"] = mean_std(
                        [r["final"][name]["by_score"][score][key] for r in mine]
                    )
        row["mean_gv"] = mean_std([r["mean_gv"] for r in mine])
        row["final_gv"] = mean_std([r["final_gv"] for r in mine])
        row["final_train_loss"] = mean_std([r["loss"][-1] for r in mine])
        summary[kind] = row
    return summary


def paired(runs: list, samplers, set_names, score: str) -> dict:
    """``{sampler: {set: {metric: paired_difference vs SPOS}}}`` over the seeds both ran, of
    the ranking by `score` (one of RANK_SCORES)."""
    if BASELINE not in samplers:
        return {}
    by = {(r["sampler"], r["seed"]): r for r in runs}
    out = {}
    for kind in samplers:
        if kind == BASELINE:
            continue
        seeds = sorted(s for k, s in by if k == kind and (BASELINE, s) in by)
        out[kind] = {
            name: {
                key: paired_difference(
                    [metric(by[kind, s], name, key, score) for s in seeds],
                    [metric(by[BASELINE, s], name, key, score) for s in seeds],
                )
                for key in METRICS
            }
            for name in set_names
        }
    return out


def metric(run: dict, set_name: str, key: str, score: str) -> float:
    return run["final"][set_name]["by_score"][score][key]


def paired_table(diffs: dict, set_names) -> str:
    """Mean paired difference vs SPOS [95% bootstrap interval], Wilcoxon p; * = significant."""
    head = ["vs SPOS"] + [f"Δ{METRICS[k]} ({n})" for n in set_names for k in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for kind, per_set in diffs.items():
        cells = [LABELS[kind]]
        for name in set_names:
            for key in METRICS:
                d = per_set[name][key]
                star = " *" if d["significant"] else ""
                cells.append(
                    f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                    f"p={d['p']:.3f}{star}"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(summary: dict, set_names) -> str:
    """Table 5 of the paper (DA, PA, KT, P@Top5%), one KT/P@Top5% pair per path set, plus GV."""

    def fmt(ms, digits=3):
        return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"

    head = ["DA", "PA"]
    for name in set_names:
        head += [f"KT ({name})", f"P@Top5% ({name})"]
    head += ["GV (mean over epochs)", "train loss (last epoch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for kind, row in summary.items():
        cells = ["✓" if kind in ("da", "pada") else "-", "✓" if kind in ("pa", "pada") else "-"]
        for name in set_names:
            cells += [fmt(row[f"{name}_kt"]), fmt(row[f"{name}_p_top5"])]
        m, s = row["mean_gv"]
        cells += [f"{m:.3e} ± {s:.1e}", fmt(row["final_train_loss"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_images_phrase(cfg) -> str:
    return "all the" if not cfg.test_size else f"the first {cfg.test_size:,}"


_WORKER = {}


def _init_worker(cfg, data_root, download, threads) -> None:
    torch.set_num_threads(threads)
    _WORKER["split"] = load_split(cfg, data_root, download)


def _train_one(kind, cfg, seed, eval_sets) -> dict:
    return training.train(kind, cfg, seed, eval_sets, _WORKER["split"], progress=False)


def _print_run(r: dict) -> None:
    # one line per supernet, also without progress bars
    f = r["final"]
    print(
        f"{LABELS[r['sampler']]:6s} seed {r['seed']}: "
        + "  ".join(f"{n} KT {f[n]['kt']:.3f} P@5% {f[n]['p_top5']:.3f}" for n in f)
        + f"  GV {r['mean_gv']:.3e}  ({r['seconds']['total']:.0f}s)",
        flush=True,
    )


def train_all(cfg, jobs, eval_sets, progress, data_root, download, processes: int) -> list:
    """The supernet of every (sampler, seed) in `jobs`, in that order. With processes > 1,
    each process trains whole supernets on torch's current number of threads."""
    if processes <= 1:
        split = load_split(cfg, data_root, download)
        runs = []
        for kind, seed in jobs:
            runs.append(training.train(kind, cfg, seed, eval_sets, split, progress))
            _print_run(runs[-1])
        return runs
    ctx = multiprocessing.get_context("spawn")
    init = (cfg, data_root, download, torch.get_num_threads())
    with ctx.Pool(processes, _init_worker, init) as pool:
        pending = [pool.apply_async(_train_one, (k, cfg, s, eval_sets)) for k, s in jobs]
        runs = []
        for p in pending:
            runs.append(p.get())
            _print_run(runs[-1])
    return runs


def run(
    cfg,
    samplers,
    seeds,
    ground_truth,
    out_dir,
    command="",
    progress=True,
    plot=True,
    data_root="./data",
    download=True,
    processes=1,
):
    """Trains every sampler with every seed (interleaved, so a slow spell of the
    shared machine does not hit one sampler only; `processes` supernets at a time)
    and writes ``results.json``, ``table.md`` and the plots to `out_dir`. `data_root`
    and `download` locate CIFAR-10 (see :func:`pada_nas.data.cifar10`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_sets, gt = load_ground_truth(ground_truth)
    set_names = sorted(eval_sets, key=lambda s: (s != "sub64", s))
    started = time.perf_counter()
    jobs = [(kind, seed) for seed in seeds for kind in samplers]
    runs = train_all(cfg, jobs, eval_sets, progress, data_root, download, processes)
    seconds = time.perf_counter() - started
    summary = summarise(runs, samplers, set_names)
    table = markdown_table(summary, set_names)
    ranked = f"Paths ranked by the supernet's {cfg.rank_by} on {test_images_phrase(cfg)}"
    table += "\n\n" + ranked + " test images."
    # the comparison for every ranking score; the reported one is cfg.rank_by's
    diffs_by_score = {k: paired(runs, samplers, set_names, k) for k in RANK_SCORES}
    diffs = diffs_by_score[cfg.rank_by]
    if diffs:
        table += "\n\n" + paired_table(diffs, set_names)
        for k in RANK_SCORES:
            if k != cfg.rank_by:
                table += f"\n\nRanked by {k} instead:\n\n" + paired_table(
                    diffs_by_score[k], set_names
                )
    payload = {
        "command": command,
        "config": runs[0]["config"],
        "samplers": list(samplers),
        "seeds": list(seeds),
        "ground_truth": {
            "file": str(ground_truth),
            "command": gt.get("command"),
            "config": gt.get("config"),
            "seed_kendall_tau": gt.get("seed_kendall_tau"),
            "paths": {n: len(eval_sets[n][0]) for n in set_names},
        },
        "summary": summary,
        "paired_vs_spos": diffs,
        "paired_vs_spos_by_score": diffs_by_score,
        "table": table,
        "seconds": seconds,
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "processes": processes,
            "cpu": platform.processor() or platform.machine(),
        },
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in runs],
    }
    with open(out / "results.json", "w") as f:
        json.dump(payload, f, separators=(",", ":"))  # compact: it holds every path's accuracy
    with open(out / "table.md", "w") as f:
        f.write(f"Command: `{command}`\n\n{table}\n")
    if plot:
        from .plots import plot_runs

        plot_runs(runs, samplers, set_names, out)
    return payload
