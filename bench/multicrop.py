"""Multi-crop views: do they help the frozen MobileNetV2 head, for training or at test time?

Run: ``.venv/bin/python bench/multicrop.py`` (about 6 minutes on 2 CPU cores). Each poster
is embedded in 12 views: the plain 320x224 stretch, five 320x224 crops (four corners and
the centre) of a 366x256 stretch, and the horizontal flip of each. On the five grouped
splits of ``bench/quality.py`` it compares, against the per-genre logistic regression on
the plain features: the head trained on plain views (the shipped default), that head
averaged over all 12 views at test time, a head trained on all 12 views as augmentation
(with and without the 12-view average), and a head on the mean of the 12 embeddings.
Results are in docs/benchmarks.md; none of these was kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.models.backbones import build_backbone, resolve_weights, spec_for  # noqa: E402
from anigenre.models.callbacks import ValMAPEarlyStopping  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.embed import decode_all  # noqa: E402
from anigenre.models.heads import build_head  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402
from quality import KEYS, SEEDS, logistic_probs, resplit  # noqa: E402

SIZE = (320, 224)
LARGER = (366, 256)  # SIZE / 0.875: each crop keeps 87.5% of the height and width
CROPS = {"tl": (0, 0), "tr": (0, 32), "bl": (46, 0), "br": (46, 32), "c": (23, 16)}


def embed_views(backbone, paths, max_pixels: int) -> dict[str, np.ndarray]:
    arrays = {"plain": decode_all(paths, SIZE, "stretch", max_pixels)}
    larger = decode_all(paths, LARGER, "stretch", max_pixels)
    for name, (y, x) in CROPS.items():
        arrays[name] = larger[:, y : y + SIZE[0], x : x + SIZE[1]]
    views = {}
    for name, a in arrays.items():
        for flip in (False, True):
            x = (a[:, :, ::-1] if flip else a).astype(np.float32)
            views[name + ("-flip" if flip else "")] = np.concatenate(
                [np.asarray(backbone.predict_on_batch(x[i : i + 32])) for i in range(0, len(x), 32)]
            )
    return views


def train_heads(X, Y, score_val, Y_val, seed: int, config: TrainConfig) -> list:
    """The shipped frozen recipe: an ensemble of heads, early-stopped on validation mAP."""
    heads = []
    norm = float(np.mean(np.linalg.norm(X, axis=1)))
    scale = 1.0 / norm if config.feature_scale == "unit-norm" and norm > 0 else None
    for k in range(config.ensemble):
        keras.utils.set_random_seed(seed + k)
        head = build_head(X.shape[1], Y.shape[1], dropout=config.dropout, scale=scale)
        head.compile(
            optimizer=keras.optimizers.Adam(config.lr(frozen=True)), loss="binary_crossentropy"
        )
        stop = ValMAPEarlyStopping(lambda h=head: score_val(h), Y_val, config.patience)
        head.fit(
            X,
            Y,
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=[stop],
        )
        heads.append(head)
    return heads


class _Fitter:
    """Heads for one split, early-stopped on that split's validation labels."""

    def __init__(self, y_val: np.ndarray, seed: int, config: TrainConfig) -> None:
        self.y_val, self.seed, self.config = y_val, seed, config

    def __call__(self, train_x, train_y, val_x) -> list:
        return train_heads(
            train_x,
            train_y,
            lambda h: mean_prediction([h], [val_x]),
            self.y_val,
            self.seed,
            self.config,
        )


def mean_prediction(heads, views) -> np.ndarray:
    return np.mean([np.asarray(h.predict_on_batch(x)) for h in heads for x in views], axis=0)


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    _, dataset, vocab = bench_dataset(args)
    spec = spec_for("mobilenet_v2_1.0")
    weights = resolve_weights(spec, "auto", args.shared / "weights")
    backbone = build_backbone(spec, SIZE, weights, taps=())
    V = embed_views(backbone, [args.data_dir / p for p in dataset["path"]], 10**8)
    names = list(V)
    row = {sha: i for i, sha in enumerate(dataset["sha256"])}
    config = TrainConfig()
    results: dict[str, list[dict]] = {}
    for seed in SEEDS:
        data = resplit(dataset, seed)
        part = {s: data[data["split"] == s] for s in ("train", "val", "test")}
        Y = {s: np.stack(p["labels"].to_numpy()).astype(np.float32) for s, p in part.items()}
        X = {v: {s: V[v][[row[h] for h in p["sha256"]]] for s, p in part.items()} for v in names}
        mean_view = {s: np.mean([X[v][s] for v in names], axis=0) for s in part}
        out = {
            "logistic regression (plain)": logistic_probs(
                X["plain"], Y["train"], Y["val"], len(vocab)
            )["test"]
        }

        fit = _Fitter(Y["val"], seed, config)
        plain = fit(X["plain"]["train"], Y["train"], X["plain"]["val"])
        out["head, plain (shipped)"] = mean_prediction(plain, [X["plain"]["test"]])
        out["head, 12-view TTA"] = mean_prediction(plain, [X[v]["test"] for v in names])
        augmented = fit(
            np.concatenate([X[v]["train"] for v in names]),
            np.concatenate([Y["train"]] * len(names)),
            X["plain"]["val"],
        )
        out["head trained on 12 views"] = mean_prediction(augmented, [X["plain"]["test"]])
        out["... + 12-view TTA"] = mean_prediction(augmented, [X[v]["test"] for v in names])
        pooled = fit(mean_view["train"], Y["train"], mean_view["val"])
        out["head on the mean of 12 embeddings"] = mean_prediction(pooled, [mean_view["test"]])
        for name, P in out.items():
            results.setdefault(name, []).append(
                {k: m.HEADLINE[k](P, Y["test"], None) for k in KEYS}
            )
        print(f"split {seed} done", flush=True)

    base = results["head, plain (shipped)"]
    print("\n| mean over 5 splits | macro mAP | micro mAP | P@3 | Δ vs shipped head (each) |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        mean = " | ".join(f"{np.mean([r[k] for r in rows]):.3f}" for k in KEYS)
        delta = " / ".join(
            f"{np.mean([r[k] - b[k] for r, b in zip(rows, base, strict=True)]):+.3f}" for k in KEYS
        )
        print(f"| {name} | {mean} | {delta} |")


if __name__ == "__main__":
    main()
