"""Kendall tau of a saved pilot supernet's paths against the digits_distorted ground truth,
by four scores: accuracy, negated cross-entropy, mean p(true class) and the mean logit
margin of the true class (clamped to +-5). From the repository root:

    PYTHONPATH=python:. python python/results/pilots_distorted/supernet_scores/pilot_scores.py \
        spos8.pt 3000 sub64
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from pada_nas.config import load_split, make_config
from pada_nas.experiment import config_from_ground_truth, load_ground_truth
from pada_nas.nb201 import Supernet
from scipy import stats

GT = Path(__file__).resolve().parents[3] / "ground_truth" / "digits_distorted.json"


def main():
    torch.set_num_threads(1)
    sets, gt = load_ground_truth(GT)
    split = load_split(make_config("small", **config_from_ground_truth(gt)))
    model = Supernet(8, 1, 10, 1)
    model.load_state_dict(torch.load(sys.argv[1]))
    model.eval()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12000
    x, y = split.x_test[:n], split.y_test[:n]
    paths, truth = sets[sys.argv[3] if len(sys.argv) > 3 else "random"]
    res = {k: [] for k in ("acc", "nll", "pc", "margin")}
    with torch.no_grad():
        for p in paths:
            o = torch.cat([model(xb, p) for xb in x.tensor_split(-(-n // 256))])
            lp = o.log_softmax(1)
            res["acc"].append(float((o.argmax(1) == y).float().mean()))
            res["nll"].append(-float(F.nll_loss(lp, y)))
            res["pc"].append(float(lp.gather(1, y[:, None]).exp().mean()))
            top2 = o.topk(2, 1).values
            corr = o.gather(1, y[:, None])[:, 0]
            other = torch.where(o.argmax(1) == y, top2[:, 1], top2[:, 0])
            res["margin"].append(float((corr - other).clamp(-5, 5).mean()))
    for k, v in res.items():
        print(k, round(stats.kendalltau(v, truth).statistic, 3))


if __name__ == "__main__":
    main()
