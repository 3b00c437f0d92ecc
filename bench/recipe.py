"""Recipe bench: the real trainer (``models.train.train``) on the shared folders, paired.

Run: ``.venv/bin/python bench/recipe.py --data-dir data/bench-all`` (about 20 minutes on
2 cores; it imports every labelled folder under ``../shared/data`` once; ``--posters``
chooses). ``bench/transfer.py`` judges recipes per label source and on a lockbox.

Each recipe is a set of ``TrainConfig`` fields; each is trained on the same five grouped
splits (seeds 0-4) and scored on the test posters of franchises it never saw: all of
them, and the full-size ones only (what issue 9's bar is checked on). Besides the ranking
figures, the model's own ``predicted`` column is judged: genres per poster predicted over
true, the worst genre's predicted rate over its true rate (genres with 3+ test
positives), micro F1. Deltas are paired per split against the first recipe.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.train import dataset_splits, train  # noqa: E402
from common import ALL_FOLDERS, bench_dataset, bench_parser, small_shas  # noqa: E402
from decisions import judge  # noqa: E402
from quality import KEYS, SEEDS, resplit  # noqa: E402

V2 = {"backbone": "mobilenet_v2_1.0"}  # MobileNetV2 1.0 alone, the default before the pair
RECIPES = {
    "before: last layer, unscaled, lr 1e-3": {
        **V2, "taps": (), "feature_scale": "none", "learning_rate": 1e-3
    },
    "unit-norm features, lr 1e-3": {**V2, "taps": (), "learning_rate": 1e-3},
    "unit-norm + block 16, lr 1e-3": {**V2, "learning_rate": 1e-3},
    "block 16, unscaled, lr 1e-3": {**V2, "feature_scale": "none", "learning_rate": 1e-3},
    "unit-norm + block 16, lr 3e-3": V2,
    "unit-norm + block 16, lr 3e-3, 10 heads": {**V2, "ensemble": 10},
    "unit-norm + block 16, lr 1e-2": {**V2, "learning_rate": 1e-2},
    "unit-norm + block 16, lr 3e-3, dropout 0.5": {**V2, "dropout": 0.5},
    "+ MobileNetV2 0.35 beside it (defaults)": {},
}  # fmt: skip
JUDGED = ("count_ratio", "worst_rate", "micro_f1", "macro_f1")


def both_folders(args: argparse.Namespace):
    """(dataset, vocabulary) of the shared folders, imported into the data dir once."""
    _, dataset, vocab = bench_dataset(args)
    return dataset, vocab


def figures(P: np.ndarray, Y: np.ndarray, thresholds: np.ndarray) -> dict:
    out = {k: m.HEADLINE[k](P, Y, None) for k in KEYS}
    return {**out, **judge(P, Y, thresholds)}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--posters", default=ALL_FOLDERS, help="folders under ../shared/data")
    args = parser.parse_args()
    dataset, vocab = both_folders(args)
    thumbs = small_shas(args.shared)
    print(f"{len(dataset)} posters ({len(thumbs)} small), recipes: {args.recipes}", flush=True)
    results: dict[str, list[dict]] = {r: [] for r in args.recipes}
    started = time.monotonic()
    for seed in SEEDS:
        data = resplit(dataset, seed)
        test = dataset_splits(data, args.data_dir)["test"]
        full = ~np.isin(np.array(test.shas), list(thumbs))
        for name in args.recipes:
            config = TrainConfig(bootstrap=10, **RECIPES[name])
            outcome = train(
                data,
                vocab,
                data_dir=args.data_dir,
                weights_dir=args.shared / "weights",
                config=config,
                max_pixels=10**8,
            )
            t = np.array([outcome.report["thresholds"][g] for g in vocab.genres])
            P = outcome.probs["test"]
            results[name].append(
                {"all": figures(P, test.Y, t), "full": figures(P[full], test.Y[full], t)}
            )
            row = results[name][-1]["full"]
            print(
                f"seed {seed} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
                flush=True,
            )
    base = results[args.recipes[0]]
    for which, title in (("full", "full-size test posters"), ("all", "all test posters")):
        print(f"\n{title}: mean over five splits; Δ vs '{args.recipes[0]}': mean (min, max)\n")
        print("| recipe | " + " | ".join(KEYS + JUDGED) + " |")
        print("|---" * (1 + len(KEYS) + len(JUDGED)) + "|")
        for name, rows in results.items():
            cells = []
            for k in KEYS + JUDGED:
                mean = np.mean([r[which][k] for r in rows])
                d = [r[which][k] - b[which][k] for r, b in zip(rows, base, strict=True)]
                delta = f" Δ {np.mean(d):+.3f} ({min(d):+.3f}, {max(d):+.3f})" if k in KEYS else ""
                worst = (
                    f" (max {max(r[which][k] for r in rows):.2f})"
                    if k != "micro_f1" and k in JUDGED
                    else ""
                )
                cells.append(f"{mean:.3f}{worst}{delta if name != args.recipes[0] else ''}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
