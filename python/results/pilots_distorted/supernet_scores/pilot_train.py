"""One pilot supernet on the digits_distorted ground truth (the records in this folder).

Trains `Run` of pada_nas.train for --epochs and, at each of --evals and at the end, scores
every path of the ground truth's sets on the first --test test images by accuracy, by mean
cross-entropy (negated) and by the mean probability of the true class, with each score's
Kendall tau against the ground truth's mean accuracies. From the repository root:

    PYTHONPATH=python:. python python/results/pilots_distorted/supernet_scores/pilot_train.py \
        --epochs 12 --test 3000 --evals 4,8 --out C12.json
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pada_nas import train as T
from pada_nas.config import load_split, make_config
from pada_nas.experiment import config_from_ground_truth, load_ground_truth
from pada_nas.metrics import kendall_tau

GT = Path(__file__).resolve().parents[3] / "ground_truth" / "digits_distorted.json"


@torch.no_grad()
def scores(model, paths, x, y, bs):
    """Accuracy, mean cross-entropy and mean p(true class) of each path, batch statistics."""
    model.eval()
    pieces = -(-len(y) // bs)
    batches = list(zip(x.tensor_split(pieces), y.tensor_split(pieces)))
    accs, nlls, pcs = [], [], []
    for path in paths:
        c, nll, pc = 0, 0.0, 0.0
        for xb, yb in batches:
            o = model(xb, list(path))
            c += int((o.argmax(1) == yb).sum())
            nll += float(F.cross_entropy(o, yb, reduction="sum"))
            pc += float(o.softmax(1).gather(1, yb[:, None]).sum())
        accs.append(c / len(y))
        nlls.append(nll / len(y))
        pcs.append(pc / len(y))
    model.train()
    return accs, nlls, pcs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="spos")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--wd", type=float, default=2.5e-4)
    p.add_argument("--test", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--evals", default="", help="comma-separated epochs to score at")
    p.add_argument("--gt", default=str(GT))
    p.add_argument("--sets", default="random,sub64")
    p.add_argument("--save", default="", help="where to save the final state_dict")
    a = p.parse_args()
    torch.set_num_threads(1)
    sets, gt = load_ground_truth(a.gt)
    cfg = make_config(
        "small",
        **config_from_ground_truth(gt),
        epochs=a.epochs,
        lr=a.lr,
        batch_size=a.batch,
        weight_decay=a.wd,
    )
    split = load_split(cfg)
    run = T.Run(a.kind, cfg, a.seed, split)
    x, y = split.x_test[: a.test], split.y_test[: a.test]
    evals = {int(e) for e in a.evals.split(",") if e} | {a.epochs}
    out = {"args": vars(a), "evals": []}
    t0 = time.time()
    for ep in range(a.epochs):
        r = run.train_epoch(ep)
        if ep + 1 not in evals:
            continue
        te = time.time()
        rec = {"epoch": ep + 1, "loss": r["loss"], "train_s": te - t0}
        for name in a.sets.split(","):
            paths, truth = sets[name]
            acc, nll, pc = scores(run.model, paths, x, y, 256)
            rec[name] = {
                "kt": kendall_tau(acc, truth),
                "kt_nll": kendall_tau([-v for v in nll], truth),
                "kt_pc": kendall_tau(pc, truth),
                "acc": acc,
                "nll": nll,
                "pc": pc,
            }
        rec["eval_s"] = time.time() - te
        out["evals"].append(rec)
        kts = {k: (rec[k]["kt"], rec[k]["kt_nll"], rec[k]["kt_pc"]) for k in a.sets.split(",")}
        print(a.out, ep + 1, kts, f"loss {r['loss']:.3f}", flush=True)
    with open(a.out, "w") as f:
        json.dump(out, f)
    if a.save:
        torch.save(run.model.state_dict(), a.save)


if __name__ == "__main__":
    main()
