"""Decision-rule bench: which thresholds make the ``predicted`` column match reality.

Run: ``.venv/bin/python bench/decisions.py --data-dir data/bench`` (a data dir whose
dataset is imported and whose frozen features are cached: ``bench/quality.py`` makes one).

For each of five grouped splits it trains the default head once, then turns its validation
probabilities into per-genre thresholds by each rule and scores the test posters: mean
genres predicted per poster against the true mean, the worst genre's predicted rate over its
true rate (genres with at least 3 test positives), and micro F1.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from anigenre.config import load_settings  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.core.dataset_store import DATASET_PATH, read_dataset  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.evaluation import MIN_POSITIVES  # noqa: E402
from anigenre.models.train import dataset_splits, train  # noqa: E402
from common import bench_parser, small_shas  # noqa: E402
from quality import KEYS, SEEDS, resplit  # noqa: E402


def f1_rule(P, Y, prev):
    g = m.tune_global_threshold(P, Y)
    return m.tune_thresholds(P, Y, default=g, min_positives=MIN_POSITIVES)


def global_rule(P, Y, prev):
    return np.full(P.shape[1], m.tune_global_threshold(P, Y))


def shrunk(strength):
    def rule(P, Y, prev):
        g = m.tune_global_threshold(P, Y)
        t = m.tune_thresholds(P, Y, default=g, min_positives=MIN_POSITIVES)
        n = Y.sum(axis=0)
        return (n * t + strength * g) / (n + strength)

    return rule


def capped(cap, base=f1_rule):
    def rule(P, Y, prev):
        return m.rate_capped_thresholds(base(P, Y, prev), P, prev, cap)

    return rule


RULES = [
    ("per-genre F1 on validation (today)", f1_rule),
    ("one global threshold", global_rule),
    ("per-genre F1 shrunk to global, 10", shrunk(10)),
    ("F1, capped at 1.0x prevalence", capped(1.0)),
    ("F1, capped at 1.25x prevalence", capped(1.25)),
    ("F1, capped at 1.5x prevalence", capped(1.5)),
    ("F1, capped at 2.0x prevalence", capped(2.0)),
    ("shrunk 10, capped at 1.25x", capped(1.25, shrunk(10))),
    ("global, capped at 1.25x (shipped)", capped(1.25, global_rule)),
    ("global, capped at 1.1x", capped(1.1, global_rule)),
    ("global, capped at 1.0x", capped(1.0, global_rule)),
]


def judge(P, Y, t):
    Yhat = t <= P
    true_rate, pred_rate = Y.mean(axis=0), Yhat.mean(axis=0)
    ok = Y.sum(axis=0) >= 3
    return {
        "count_ratio": Yhat.sum(axis=1).mean() / Y.sum(axis=1).mean(),
        "worst_rate": float(np.max(pred_rate[ok] / true_rate[ok])),
        "micro_f1": m.f1_scores(Y, Yhat)["micro"],
        "macro_f1": m.f1_scores(Y, Yhat)["macro"],
    }


def thumb_shas(shared) -> set[str]:
    """The small posters of every small shared folder (thumbnails, AniList small covers)."""
    return small_shas(shared)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--no-thumbs-run", action="store_true", help="skip the paired run")
    args = parser.parse_args()
    settings = load_settings(overrides={"data_dir": args.data_dir}, env={})
    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    thumbs = thumb_shas(args.shared)

    def fit(data):
        return train(
            data,
            vocab,
            data_dir=args.data_dir,
            weights_dir=args.shared / "weights",
            # MobileNetV2 1.0 alone: the backbone these rules were measured on.
            config=TrainConfig(backbone="mobilenet_v2_1.0", bootstrap=10),
            max_pixels=10**8,
        )

    rows = {name: [] for name, _ in RULES}
    full_rows = {name: [] for name, _ in RULES}  # the full-size test posters only
    paired = []
    for seed in SEEDS:
        data = resplit(dataset, seed)
        outcome = fit(data)
        sp = dataset_splits(data, args.data_dir)
        prev = sp["train"].Y.mean(axis=0)
        full = ~np.isin(np.array(sp["test"].shas), list(thumbs))
        for name, rule in RULES:
            t = rule(outcome.probs["val"], sp["val"].Y, prev)
            rows[name].append(judge(outcome.probs["test"], sp["test"].Y, t))
            full_rows[name].append(judge(outcome.probs["test"][full], sp["test"].Y[full], t))
        if thumbs and not args.no_thumbs_run:
            # Paired: the same split without the thumbnails in train and val, both scored
            # on the full-size test posters only.
            without = data[~(data["sha256"].isin(thumbs) & data["split"].isin(["train", "val"]))]
            other = fit(without)
            Y = sp["test"].Y[full]
            a = {k: m.HEADLINE[k](outcome.probs["test"][full], Y, None) for k in KEYS}
            b = {k: m.HEADLINE[k](other.probs["test"][full], Y, None) for k in KEYS}
            paired.append((a, b, int(full.sum())))
        print(f"seed {seed} done", flush=True)
    for title, table in (("all test posters", rows), ("full-size test posters", full_rows)):
        print(f"\n{title}, mean over five splits (max over splits)\n")
        print("| rule | predicted/true genres | worst genre rate/true | micro F1 | macro F1 |")
        print("|---|---|---|---|---|")
        for name, runs in table.items():
            mean = {k: np.mean([r[k] for r in runs]) for k in runs[0]}
            most = {k: max(r[k] for r in runs) for k in runs[0]}
            print(
                f"| {name} | {mean['count_ratio']:.2f} (max {most['count_ratio']:.2f}) "
                f"| {mean['worst_rate']:.2f} (max {most['worst_rate']:.2f}) "
                f"| {mean['micro_f1']:.3f} | {mean['macro_f1']:.3f} |"
            )
    if paired:
        n = [p[2] for p in paired]
        print(f"\nThumbnails, paired on full-size test posters (n per split {n})\n")
        print("| train and val | " + " | ".join(KEYS) + " |")
        print("|---|" + "---|" * len(KEYS))
        for label, i in (("both folders", 0), ("full-size posters only", 1)):
            means = [np.mean([p[i][k] for p in paired]) for k in KEYS]
            print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
        deltas = {k: [p[0][k] - p[1][k] for p in paired] for k in KEYS}
        print(
            "| delta (both - full-size only), mean (min, max) | "
            + " | ".join(
                f"{np.mean(v):+.3f} ({min(v):+.3f}, {max(v):+.3f})" for v in deltas.values()
            )
            + " |"
        )


if __name__ == "__main__":
    main()
