"""Feature bench: which frozen features make the best head, on both shared folders.

Run: ``.venv/bin/python bench/extractors.py --data-dir data/bench-both`` (about 30 minutes
on 2 loaded CPU cores). Both ``../shared/data/posters`` and ``posters-mal-thumbs`` are imported.

Each poster is embedded once by every candidate: MobileNetV2 1.0 at 320x224 (Keras,
float; its last layer, and with block 16), MobileNetV2 0.35 beside it, the 1.0 network at
224x160 and 448x320, and two int8 LiteRT extractors in ``../shared/weights`` (MobileNetV1
embedding, MobileNet-EdgeTPU; 224x224 uint8 input). The int8 MobileNetV2 is measured
by ``bench/quality.py --variants int8``. Each feature set is scaled to unit mean L2 norm so
that concatenations weigh their parts alike. On five grouped splits the shipped head recipe
(five heads, early-stopped on validation mAP) is trained on each combination; test figures
are reported on all test posters and on full-size ones only, with paired deltas against
the shipped features.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anigenre.config import load_settings  # noqa: E402
from anigenre.core import metrics as m  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.backbones import build_backbone, resolve_weights, spec_for  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.embed import decode_all  # noqa: E402
from common import bench_parser  # noqa: E402
from multicrop import mean_prediction, train_heads  # noqa: E402
from quality import KEYS, SEEDS, resplit  # noqa: E402

SIZE = (320, 224)
LITERT = {
    "v1-int8": ("mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", None),
    "edgetpu-int8": ("mobilenet_edgetpu_224_1.0_uint8.tflite", "MobilenetEdgeTPU/Logits/AvgPool"),
}
# Float Keras candidates: (backbone, input size, taps). "mnv2" is the last layer alone,
# "mnv2-b16" the 1.0 network's part of the shipped features (with block 16).
KERAS = {
    "mnv2": ("mobilenet_v2_1.0", SIZE, ()),
    "mnv2-b16": ("mobilenet_v2_1.0", SIZE, None),
    "mnv2-0.35": ("mobilenet_v2_0.35", SIZE, ()),
    "mnv2-b16-224x160": ("mobilenet_v2_1.0", (224, 160), None),
    "mnv2-b16-448x320": ("mobilenet_v2_1.0", (448, 320), None),
}
COMBOS = [
    ("mnv2 (last layer)", ["mnv2"]),
    ("mnv2 + v1", ["mnv2", "v1-int8"]),
    ("mnv2 + edgetpu", ["mnv2", "edgetpu-int8"]),
    ("mnv2 + v1 + edgetpu", ["mnv2", "v1-int8", "edgetpu-int8"]),
    ("mnv2-b16", ["mnv2-b16"]),
    ("mnv2-b16 + v1", ["mnv2-b16", "v1-int8"]),
    ("mnv2-b16 + edgetpu", ["mnv2-b16", "edgetpu-int8"]),
    ("mnv2-b16 + mnv2 0.35", ["mnv2-b16", "mnv2-0.35"]),
    ("mnv2-b16 + itself at 224x160", ["mnv2-b16", "mnv2-b16-224x160"]),
    ("mnv2-b16 at 448x320", ["mnv2-b16-448x320"]),
]


def keras_features(paths, weights_dir):
    out = {}
    for name, (backbone_name, size, taps) in KERAS.items():
        spec = spec_for(backbone_name)
        weights = resolve_weights(spec, "auto", weights_dir)
        backbone = build_backbone(spec, size, weights, taps=taps)
        x = decode_all(paths, size, "stretch", 10**8).astype(np.float32)
        outs = [backbone.predict_on_batch(x[i : i + 32]) for i in range(0, len(x), 32)]
        out[name] = np.concatenate([np.asarray(o) for o in outs])
    return out


def litert_features(paths, path, tensor_name):
    from ai_edge_litert.interpreter import Interpreter

    # Intermediate tensors (EdgeTPU's pooled features) are only readable when preserved.
    interp = Interpreter(
        model_path=str(path), num_threads=2, experimental_preserve_all_tensors=True
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    if tensor_name is None:
        out = interp.get_output_details()[0]
    else:
        out = next(d for d in interp.get_tensor_details() if tensor_name in d["name"])
    scale, zero = out["quantization"]
    x = decode_all(paths, (224, 224), "stretch", 10**8)
    feats = []
    for img in x:
        interp.set_tensor(inp["index"], img[None].astype(np.uint8))
        interp.invoke()
        raw = interp.get_tensor(out["index"]).reshape(-1).astype(np.float32)
        feats.append((raw - zero) * scale if scale else raw)
    return np.stack(feats)


def unit_norm(x: np.ndarray) -> np.ndarray:
    return x / np.mean(np.linalg.norm(x, axis=1))


def scores(P, Y) -> dict:
    aps = [m.average_precision(Y[:, j], P[:, j]) for j in range(Y.shape[1])]
    return {
        "macro_map": float(np.mean([a for a in aps if a is not None])),
        "micro_map": m.average_precision(Y.ravel(), P.ravel()),
        "p@3": m.precision_recall_at_k(P, Y, 3)[0],
    }


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    settings = load_settings(
        overrides={"data_dir": args.data_dir, "shared_dir": args.shared}, env={}
    )
    thumbs = args.shared / "data" / "posters-mal-thumbs"
    dataset, _ = stages.ensure_dataset(settings, args.shared / "data" / "posters")
    if len(dataset) < 600:
        stages.import_dataset(settings, thumbs)
        dataset, _ = stages.ensure_dataset(settings, thumbs)
    thumb_shas = set(pd.read_csv(thumbs / "labels.csv")["sha256"])
    full = ~dataset["sha256"].isin(thumb_shas).to_numpy()
    paths = [args.data_dir / p for p in dataset["path"]]
    print(f"{len(dataset)} posters")
    cache = args.data_dir / "extractor-features.npz"
    F = dict(np.load(cache)) if cache.exists() else {}
    if set(F) != set(KERAS) | set(LITERT):  # made by an older candidate list
        F = keras_features(paths, args.shared / "weights")
        for name, (file, tensor) in LITERT.items():
            F[name] = litert_features(paths, args.shared / "weights" / file, tensor)
        np.savez(cache, **F)
    F = {k: unit_norm(v) for k, v in F.items()}
    print({k: v.shape for k, v in F.items()})

    config = TrainConfig()
    results = {name: [] for name, _ in COMBOS}
    for seed in SEEDS:
        data = resplit(dataset, seed)
        idx = {s: np.flatnonzero((data["split"] == s).to_numpy()) for s in ("train", "val", "test")}
        Y = {s: np.stack(data["labels"].to_numpy()[i]).astype(np.float32) for s, i in idx.items()}
        for name, parts in COMBOS:
            X = {s: np.concatenate([F[p][i] for p in parts], axis=1) for s, i in idx.items()}
            heads = train_heads(
                X["train"],
                Y["train"],
                lambda h, xv=X["val"]: mean_prediction([h], [xv]),
                Y["val"],
                seed,
                config,
            )
            P = mean_prediction(heads, [X["test"]])
            f = full[idx["test"]]
            results[name].append({"all": scores(P, Y["test"]), "full": scores(P[f], Y["test"][f])})
            print(seed, name, {k: round(v, 3) for k, v in results[name][-1]["all"].items()})
    base = results[COMBOS[0][0]]
    for which in ("all", "full"):
        print(f"\nmean over five splits ({which} test posters); Δ vs shipped: mean (min, max)")
        for name, rows in results.items():
            mean = {k: np.mean([r[which][k] for r in rows]) for k in KEYS}
            d = {
                k: [r[which][k] - b[which][k] for r, b in zip(rows, base, strict=True)]
                for k in KEYS
            }
            print(
                f"{name:28s} "
                + " ".join(f"{mean[k]:.3f}" for k in KEYS)
                + "  Δ "
                + " ".join(
                    f"{np.mean(d[k]):+.3f} ({min(d[k]):+.3f}, {max(d[k]):+.3f})" for k in KEYS
                )
            )


if __name__ == "__main__":
    main()
