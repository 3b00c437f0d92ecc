"""The demo's held-out 2022 posters: recipes compared on titles of a year it never trained on.

Run: ``make demo`` first (it builds ``data/demo``), then
``.venv/bin/python bench/demo_holdout.py --data-dir data/demo`` (about 5 minutes: the
features are cached by the demo and by the first backbone's runs).

Each recipe (``TrainConfig`` fields over the defaults) is trained on the demo's dataset
(every shared poster but the 2022 titles, and the other shared folders) from seeds 0-4,
and scored on the 21 held-out 2022
posters (``demo-inputs/inbox-2022``): macro and micro AP over the genres present, P@3, and
predicted over true genres per poster. One small set of one year: a check beside the
five grouped splits of ``bench/recipe.py``, not a replacement for them.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anigenre.config import load_settings  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.core.genres import Vocabulary  # noqa: E402
from anigenre.core.images import decode_image  # noqa: E402
from anigenre.core.importer import parse_genres  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.manifest import Manifest  # noqa: E402
from common import bench_parser  # noqa: E402

KEYS = ("macro_map", "micro_map", "p@3")
RECIPES = {
    "one label convention (before)": {"label_convention": None},
    "defaults": {},
}


def scores(settings, model_id: str, manifest: Manifest, folder, labels: pd.DataFrame) -> dict:
    predictor = stages.load_predictor(settings, model_id, "litert")
    images = [
        decode_image((folder / f).read_bytes(), predictor.size, predictor.policy)
        for f in labels["file"]
    ]
    P = predictor.predict_arrays(np.stack(images))
    genres = manifest.genres
    Y = Vocabulary(tuple(genres)).encode([parse_genres(r) for r in labels.to_dict("records")])
    present = Y.sum(axis=0) > 0
    out = {k: m.HEADLINE[k](P[:, present], Y[:, present], None) for k in KEYS}
    thresholds = np.array([manifest.thresholds[g] for g in genres])
    out["count"] = float((thresholds <= P).sum(axis=1).mean() / Y.sum(axis=1).mean())
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.set_defaults(data_dir=Path("data/demo"))
    args = parser.parse_args()
    settings = load_settings(
        overrides={"data_dir": args.data_dir, "shared_dir": args.shared}, env={}
    )
    inbox = args.data_dir / "demo-inputs" / "inbox-2022"
    labels = pd.read_csv(inbox / "labels.csv")
    results: dict[str, list[dict]] = {}
    first = next(iter(RECIPES))
    for name, recipe in RECIPES.items():
        for seed in range(5):
            config = TrainConfig(**{**recipe, "seed": seed, "bootstrap": 10})
            model_id, manifest = stages.train_model(settings, config)
            row = scores(settings, model_id, manifest, inbox / "images", labels)
            results.setdefault(name, []).append(row)
            print(name, seed, {k: round(v, 3) for k, v in row.items()}, flush=True)
    base = results[first]
    print(f"\n{len(labels)} posters; mean over seeds 0-4, Δ paired per seed vs {first}\n")
    print("| recipe | " + " | ".join((*KEYS, "predicted / true genres")) + " |")
    print("|---" * (2 + len(KEYS)) + "|")
    for backbone, rows in results.items():
        cells = []
        for k in (*KEYS, "count"):
            d = [r[k] - b[k] for r, b in zip(rows, base, strict=True)]
            delta = f" Δ {np.mean(d):+.3f}" if backbone != first else ""
            cells.append(f"{np.mean([r[k] for r in rows]):.3f}{delta}")
        print(f"| {backbone} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
