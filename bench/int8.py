"""Int8 bench: the networks that could serve at the decode limit, against the float pair.

Run: ``nice -n 10 .venv/bin/python bench/int8.py --data-dir data/bench-int8`` (it imports
the three labelled folders under ``../shared/data`` once; about 30 minutes on 2 loaded
cores, most of it quantizing and embedding each split's network once).

Each variant is a set of ``TrainConfig`` fields trained by the real trainer
(``models.train.train``) on the same five grouped splits (seeds 0-4) and scored on the test
posters of franchises it never saw: pooled, and per label source (``mal-mapped``: ~2.4
genres a poster, ``anilist``: ~3.9). An ``_int8`` backbone of ours is quantized per split
(``models.int8.quantized_weights``: full integer, calibrated on 200 of that split's training
posters) and its head trained on the int8 network's own features, as ``anigenre train``
does, so the figures are those of the engine that serves. Deltas are paired per split
against the first variant. Then each variant's served network (LiteRT: the whole float
model, or the int8 features network and the float head) runs over the same decoded
posters, one per invoke, in alternating rounds: posters/s side by side, in this one run.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.embed import decode_all  # noqa: E402
from anigenre.models.engines import FloatNetwork, Int8Features  # noqa: E402
from anigenre.models.export import convert_to_litert  # noqa: E402
from anigenre.models.int8 import network_bytes  # noqa: E402
from anigenre.models.train import dataset_splits, train  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402
from decisions import judge  # noqa: E402
from quality import KEYS, SEEDS, resplit  # noqa: E402

PAIR = "mobilenet_v2_1.0_with_0.35"
VARIANTS = {
    "float pair (the default before)": {"backbone": PAIR},
    "int8 pair, ours (ptq), 320x224": {"backbone": f"{PAIR}_int8"},
    "int8 pair, ours (ptq), 256x176": {"backbone": f"{PAIR}_int8", "input_size": (256, 176)},
    "int8 MobileNetV2, shared file": {"backbone": "mobilenet_v2_1.0_int8"},
}
JUDGED = ("count_ratio", "worst_rate", "micro_f1")
SOURCES = ("pooled", "mal-mapped", "anilist")


def label_sources(shared, shas) -> np.ndarray:
    """Each poster's ``label_source`` from the shared folders' labels (anilist-paper-table4
    counts as anilist: the same convention)."""
    known = {}
    for labels in sorted((shared / "data").glob("*/labels.csv")):
        table = pd.read_csv(labels)
        if "label_source" in table:
            known.update(zip(table["sha256"], table["label_source"], strict=True))
    out = [str(known.get(s, "")) for s in shas]
    return np.array(["anilist" if s.startswith("anilist") else s for s in out], dtype=object)


def figures(P, Y, t) -> dict:
    return {**{k: m.HEADLINE[k](P, Y, None) for k in KEYS}, **judge(P, Y, t)}


def served(outcome):
    """The variant's network as LiteRT serves it: (extract or None, head or whole model)."""
    w = outcome.weights
    if w.features is None:
        return None, FloatNetwork(model_content=convert_to_litert(outcome.model))
    head = outcome.model.layers[-1]
    features = Int8Features(model_content=network_bytes(w.features, w.features_kind))
    return features, FloatNetwork(model_content=convert_to_litert(head), invoke_batch=1 << 30)


def network_rates(networks: dict, paths, rounds: int = 3) -> dict[str, float]:
    """Posters/s of each network over the same decoded posters; the median of ``rounds``
    alternating rounds, so a busy moment of the machine falls on all of them alike."""
    images = {}
    rates: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(rounds):
        for name, (size, (features, net)) in networks.items():
            if size not in images:
                images[size] = decode_all(paths, size, "stretch", 10**8)
            x = images[size]
            net(features(x[:1]) if features else x[:1].astype(np.float32))  # warm
            t = time.perf_counter()
            for i in range(len(x)):
                one = x[i : i + 1]
                net(features(one) if features else one.astype(np.float32))
            rates[name].append(len(x) / (time.perf_counter() - t))
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--posters",
        default="posters,posters-mal-thumbs,posters-anilist-small",
        help="the labelled folders under ../shared/data, comma-separated",
    )
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--speed-posters", type=int, default=150)
    args = parser.parse_args()
    _, dataset, vocab = bench_dataset(args)
    sources = label_sources(args.shared, dataset["sha256"].tolist())
    by_sha = dict(zip(dataset["sha256"], sources, strict=True))
    print(f"{len(dataset)} posters; {pd.Series(sources).value_counts().to_dict()}", flush=True)
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    networks = {}
    started = time.monotonic()
    for seed in args.seeds:
        data = resplit(dataset, seed)
        test = dataset_splits(data, args.data_dir)["test"]
        src = np.array([by_sha[s] for s in test.shas])
        for name in args.variants:
            outcome = train(
                data,
                vocab,
                data_dir=args.data_dir,
                weights_dir=args.shared / "weights",
                config=TrainConfig(bootstrap=10, **VARIANTS[name]),
                max_pixels=10**8,
            )
            t = np.array([outcome.report["thresholds"][g] for g in vocab.genres])
            P = outcome.probs["test"]
            row = {"pooled": figures(P, test.Y, t)}
            for s in SOURCES[1:]:
                row[s] = figures(P[src == s], test.Y[src == s], t)
            results[name].append(row)
            if name not in networks:
                networks[name] = (outcome.size, served(outcome))
            print(
                f"seed {seed} {name}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in row["pooled"].items())
                + f" ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    base = results[args.variants[0]]
    for which in SOURCES:
        n = int(np.sum([1 for s in sources if s == which])) if which != "pooled" else len(sources)
        print(f"\n{which} test posters ({n} posters in all): mean over splits; Δ mean (min, max)\n")
        print("| variant | " + " | ".join(KEYS + JUDGED) + " |")
        print("|---" * (1 + len(KEYS) + len(JUDGED)) + "|")
        for name, rows in results.items():
            cells = []
            for k in KEYS + JUDGED:
                vals = [r[which][k] for r in rows]
                cell = f"{np.mean(vals):.3f}"
                if k in KEYS and name != args.variants[0]:
                    d = [r[which][k] - b[which][k] for r, b in zip(rows, base, strict=True)]
                    cell += f" Δ {np.mean(d):+.3f} ({min(d):+.3f}, {max(d):+.3f})"
                cells.append(cell)
            print(f"| {name} | " + " | ".join(cells) + " |")
    paths = [args.data_dir / p for p in dataset["path"][: args.speed_posters]]
    rates = network_rates(networks, paths)
    first = rates[args.variants[0]]
    print(f"\nnetwork alone, LiteRT, one poster per invoke ({len(paths)} posters, median of 3)\n")
    print("| variant | posters/s | × the first |")
    print("|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.1f} | {r / first:.2f} |")
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
