"""Transfer bench: recipes judged per label source and on a lockbox no recipe choice has seen.

Run: ``nice -n 10 .venv/bin/python bench/transfer.py --data-dir data/bench-all`` (imports
the three shared folders once; the frozen features are cached, so each recipe costs its
heads only: about a minute on the 2 cores).

Why: the five grouped splits overstated the independent held-out posters (mostly
MAL-mapped labels, franchises never seen) by 0.12 macro mAP. The protocol here:

- **Lockbox**: the franchise groups whose posters are all ``mal-mapped`` and whose salted
  hash falls in 35% (``core.splits.lockbox_mask``: a group's place never depends on the
  other rows). No five-split figure ever includes them; each recipe is trained on every
  other poster (seeds 0-2 of a grouped train/val split of them) and scored there.
- **Five grouped splits** (seeds 0-4) of the other posters, every figure pooled and per
  ``label_source`` (``core.metrics.by_label_source``).

Recipes are ``TrainConfig`` fields, plus ``drop`` (folders left out of training and
validation; the test posters stay, so the deltas are paired). ``--sizes`` adds a check of
how small a poster may be: the lockbox posters scored again after downscaling them to
150, 100, 75 and 50 px wide.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.core.groups import linked_groups  # noqa: E402
from anigenre.core.images import decode_image  # noqa: E402
from anigenre.core.splits import grouped_stratified_split, lockbox_mask  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.train import train  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402
from decisions import judge  # noqa: E402
from PIL import Image  # noqa: E402

FOLDERS = ("posters", "posters-mal-thumbs", "posters-anilist-small")
KEYS = ("macro_map", "micro_map", "p@3")
JUDGED = ("count_ratio", "worst_rate", "micro_f1")
SEEDS = (0, 1, 2, 3, 4)
LOCKBOX_SEEDS = (0, 1, 2)
MAL = "mal-mapped"
RECIPES = {
    "one label convention (the default before)": {"label_convention": None},
    "defaults (label convention mal-mapped)": {},
    "without posters-anilist-small": {"drop": ("posters-anilist-small",)},
    "without the two small folders": {"drop": ("posters-anilist-small", "posters-mal-thumbs")},
    "10 heads": {"ensemble": 10},
    "flip TTA": {"tta": ("flip",)},
    # Mirror images' features as extra training rows; served on the plain view only.
    "flip augment": {"augment": ("flip",)},
    "flip + zoom augment": {"augment": ("flip", "zoom")},
    "flip augment, dropout 0.5": {"augment": ("flip",), "dropout": 0.5},
    "flip augment, hidden 256": {"augment": ("flip",), "hidden": 256},
    "hidden 256": {"hidden": 256},
    "weighted-bce": {"loss": "weighted-bce"},
    "flip augment, 10 heads": {"augment": ("flip",), "ensemble": 10},
    # MobileNetV2 1.0 alone (block 16 kept), int8 by our quantization: no 0.35 companion.
    "V2 1.0 alone, int8": {"backbone": "mobilenet_v2_1.0_ptq_int8"},
    "V2 1.0 alone, int8, flip augment": {
        "backbone": "mobilenet_v2_1.0_ptq_int8",
        "augment": ("flip",),
    },
    "V2 1.0 alone, int8, flip augment, hidden 256": {
        "backbone": "mobilenet_v2_1.0_ptq_int8",
        "augment": ("flip",),
        "hidden": 256,
    },
    "label convention, dropout 0.5": {"dropout": 0.5, "label_convention": MAL},
    # Smaller inputs for the default pair: the network's cost falls with the pixels.
    "input 288x200": {"input_size": (288, 200)},
    "input 256x176": {"input_size": (256, 176)},
    "input 224x160": {"input_size": (224, 160)},
}
SIZES = (150, 100, 75, 50)


def annotated(args) -> tuple[pd.DataFrame, object]:
    """The dataset of ``args.posters`` with each row's folder, label source and width
    (from the folders' labels.csv, by content hash)."""
    _, dataset, vocab = bench_dataset(args)
    info = []
    for folder in FOLDERS:
        labels = args.shared / "data" / folder / "labels.csv"
        if labels.exists():
            frame = pd.read_csv(labels, usecols=["sha256", "label_source", "width"])
            info.append(frame.assign(folder=folder))
    info = pd.concat(info).drop_duplicates("sha256")
    # Imported before the dataset kept label sources, or not: the folders' word.
    dataset = dataset.drop(columns=["label_source"], errors="ignore")
    dataset = dataset.merge(info, on="sha256", how="left")
    dataset["linked"] = linked_groups(dataset["group"], dataset["title"], dataset["anilist_id"])
    dataset["lockbox"] = lockbox_mask(dataset["linked"].tolist(), dataset["label_source"].tolist())
    return dataset, vocab


def split_of(data: pd.DataFrame, seed: int) -> np.ndarray:
    return grouped_stratified_split(
        data["linked"].tolist(), np.stack(data["labels"].to_numpy()), seed=seed
    )


def five_split(dataset: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A grouped split of the posters outside the lockbox."""
    data = dataset[~dataset["lockbox"]].copy()
    data["split"] = split_of(data, seed)
    return data


def lockbox_split(dataset: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every poster outside the lockbox trains (85%) or validates (15%); the lockbox tests."""
    data = dataset.copy()
    rest = ~data["lockbox"]
    split = split_of(data[rest], seed)
    data.loc[rest, "split"] = np.where(split == "test", "train", split)
    data.loc[~rest, "split"] = "test"
    return data


def fit(args, data: pd.DataFrame, vocab, recipe: dict):
    cfg = {k: v for k, v in recipe.items() if k != "drop"}
    dropped = data["folder"].isin(recipe.get("drop", ())) & data["split"].isin(["train", "val"])
    return train(
        data[~dropped],
        vocab,
        data_dir=args.data_dir,
        weights_dir=args.shared / "weights",
        config=TrainConfig(bootstrap=10, **cfg),
        max_pixels=10**8,
    )


def figures(outcome, data: pd.DataFrame, vocab) -> dict:
    test = data[data["split"] == "test"]
    Y = np.stack(test["labels"].to_numpy()).astype(np.int64)
    P = outcome.probs["test"]
    t = np.array([outcome.report["thresholds"][g] for g in vocab.genres])
    out = m.by_label_source(P, Y, test["label_source"].tolist(), t)
    for name in out:
        rows = np.ones(len(Y), bool) if name == m.POOLED else (test["label_source"] == name).values
        if (Y[rows].sum(axis=0) >= 3).any():  # judge's worst genre needs 3 positives
            out[name].update(judge(P[rows], Y[rows], t))
    return out


def row_of(results: list[dict], base: list[dict] | None, source: str, key: str) -> str:
    vals = [r[source][key] for r in results if key in r.get(source, {})]
    if not vals:
        return "–"
    cell = f"{np.mean(vals):.3f}"
    if base is not None and key in KEYS and len(base) == len(results):
        d = [
            r[source][key] - b[source][key]
            for r, b in zip(results, base, strict=True)
            if key in r.get(source, {})
        ]
        cell += f" Δ {np.mean(d):+.3f}" + (f" ({min(d):+.3f}, {max(d):+.3f})" if len(d) > 1 else "")
    return cell


def sizes_check(args, dataset, vocab, outcome, data) -> None:
    """The lockbox posters, downscaled, through the model trained on the rest."""
    test = data[data["split"] == "test"]
    Y = np.stack(test["labels"].to_numpy()).astype(np.int64)
    size = tuple(outcome.size)
    print(f"\nLockbox posters downscaled ({len(test)} posters, seed-0 defaults)\n")
    print("| width | " + " | ".join(KEYS) + " |")
    print("|---" * (1 + len(KEYS)) + "|")
    print(
        "| as they are | "
        + " | ".join(f"{figures(outcome, data, vocab)[m.POOLED][k]:.3f}" for k in KEYS)
        + " |"
    )
    for width in SIZES:
        images = []
        for path in test["path"]:
            with Image.open(args.data_dir / path) as img:
                img = img.convert("RGB")
                height = round(img.height * width / img.width)
                small = img.resize((width, height), Image.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=90)
            images.append(decode_image(buf.getvalue(), size, "stretch"))
        P = outcome.model.predict(np.stack(images).astype(np.float32), verbose=0, batch_size=32)
        print(
            f"| {width} px | "
            + " | ".join(f"{m.HEADLINE[k](P, Y, None):.3f}" for k in KEYS)
            + " |",
            flush=True,
        )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.set_defaults(data_dir=Path("data/bench-all"))
    parser.add_argument("--posters", default=",".join(FOLDERS))
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--sizes", action="store_true", help="the downscaled-lockbox check")
    parser.add_argument("--no-splits", action="store_true", help="the lockbox only")
    parser.add_argument(
        "--no-lockbox", action="store_true", help="the five splits only (lockbox measured before)"
    )
    parser.add_argument("--out", type=Path, help="also write every figure here (JSON)")
    parser.add_argument(
        "--against",
        type=Path,
        nargs="*",
        default=[],
        help="JSONs of earlier runs: their recipes join the tables (the first file's first "
        "recipe is the one the deltas are paired against)",
    )
    args = parser.parse_args()
    dataset, vocab = annotated(args)
    box = dataset[dataset["lockbox"]]
    print(
        f"{len(dataset)} posters; lockbox {len(box)} posters in {box['linked'].nunique()} "
        f"franchise groups ({dict(box['label_source'].value_counts())}); "
        f"label sources {dict(dataset['label_source'].value_counts())}",
        flush=True,
    )
    started = time.monotonic()
    splits = {s: five_split(dataset, s) for s in SEEDS}
    boxes = {s: lockbox_split(dataset, s) for s in LOCKBOX_SEEDS}
    res: dict[str, dict[str, list]] = {}
    for name in args.recipes:
        recipe = RECIPES[name]
        res[name] = {"splits": [], "lockbox": []}
        for s in () if args.no_lockbox else LOCKBOX_SEEDS:
            outcome = fit(args, boxes[s], vocab, recipe)
            res[name]["lockbox"].append(figures(outcome, boxes[s], vocab))
            if args.sizes and s == 0 and name == args.recipes[0]:
                sizes_check(args, dataset, vocab, outcome, boxes[s])
        for s in () if args.no_splits else SEEDS:
            outcome = fit(args, splits[s], vocab, recipe)
            res[name]["splits"].append(figures(outcome, splits[s], vocab))
        if args.out:  # after each recipe: a run stopped early keeps what it measured
            args.out.write_text(json.dumps(res, default=float))
        done = "splits" if args.no_lockbox else "lockbox"
        runs = [r[m.POOLED] for r in res[name][done]]
        print(
            f"{name}: {done} "
            + ", ".join(f"{k} {np.mean([r[k] for r in runs if k in r]):.3f}" for k in KEYS + JUDGED)
            + f" ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(res, default=float))
    if args.against:
        earlier = {}
        for path in args.against:
            for name, r in json.loads(path.read_text()).items():
                mine = earlier.setdefault(name, {"splits": [], "lockbox": []})
                for which in ("lockbox", "splits"):
                    mine[which] = mine[which] or r.get(which, [])
        for name, r in res.items():  # a recipe measured in parts: each part from where it ran
            for which in ("lockbox", "splits"):
                if not r[which] and earlier.get(name, {}).get(which):
                    r[which] = earlier[name][which]
        res = {**earlier, **res}
        args.recipes = list(res)
    report(args, res)


def report(args, res) -> None:
    first = args.recipes[0]
    columns = [("lockbox", m.POOLED, "lockbox (mal-mapped, unseen)")]
    if any(r["splits"] for r in res.values()):
        columns += [
            ("splits", m.POOLED, "five splits, pooled"),
            ("splits", MAL, "five splits, mal-mapped"),
            ("splits", "anilist", "five splits, anilist"),
        ]
    for which, source, title in columns:
        print(f"\n{title}: mean; Δ paired vs '{first}': mean (min, max)\n")
        print("| recipe | " + " | ".join(KEYS + JUDGED) + " |")
        print("|---" * (1 + len(KEYS) + len(JUDGED)) + "|")
        for name, r in res.items():
            base = None if name == first else res[first][which]
            cells = [row_of(r[which], base, source, k) for k in KEYS + JUDGED]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
