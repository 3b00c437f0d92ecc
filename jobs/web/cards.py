"""The Models page's data: each registered model's card and held-out figures. No Streamlit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from anigenre.models.card import weights_sources
from anigenre.models.registry import MODELS_DIR, list_models

FIGURES = (("macro mAP", "macro_map"), ("micro mAP", "micro_map"), ("P@3", "p@3"))
FIGURES_F1 = ("micro F1", "micro_f1")


def models_newest_first(data_dir: Path) -> list[dict]:
    """Manifests, newest first, each with ``is_latest`` (what ``--model latest`` means)."""
    models = list_models(data_dir)
    out = [{**m, "is_latest": i == len(models) - 1} for i, m in enumerate(models)]
    return list(reversed(out))


def card(manifest: dict) -> dict[str, str]:
    """What a person asks of a model before trusting it, as label -> text."""
    h, w = manifest["input_size"]
    training = manifest.get("training", {})
    rows = manifest.get("dataset", {}).get("rows", {})
    weights = manifest.get("weights") or {}
    return {
        "backbone": manifest["backbone"],
        "weights": weights_sources(weights),
        "created": manifest["created"],
        "input": f"{h}x{w} pixels, {manifest['resize_policy']}"
        + (f", test-time {'+'.join(manifest['tta'])}" if manifest.get("tta") else ""),
        "training": f"{training.get('mode', '?')}, {training.get('epochs_run', '?')} epochs "
        f"(best {training.get('best_epoch', '?')})",
        "dataset": ", ".join(f"{k} {v}" for k, v in sorted(rows.items())),
        "genres": str(len(manifest["genres"])),
    }


def figures_table(summary: dict) -> pd.DataFrame:
    """Held-out test figures of the model and of the prior baseline, with 95% intervals."""
    out = []
    for name, key, ci in (
        ("model", "test", "test_ci95"),
        ("prior baseline", "prior", "prior_ci95"),
    ):
        row = {"": name}
        for label, metric in (*FIGURES, FIGURES_F1):
            value = summary.get(key, {}).get(metric)
            bounds = summary.get(ci, {}).get(metric)
            row[label] = (
                "-"
                if value is None
                else f"{value:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")
            )
        out.append(row)
    return pd.DataFrame(out).set_index("")


def per_genre_table(data_dir: Path, manifest: dict) -> pd.DataFrame | None:
    """Per genre on the test split: support, AP, F1, ROC AUC, and the tuned threshold."""
    path = Path(data_dir) / MODELS_DIR / manifest["model_id"] / "metrics.json"
    try:
        test = json.loads(path.read_text())["test"]
    except (FileNotFoundError, KeyError, ValueError):
        return None
    table = pd.DataFrame(test.get("per_genre", []))
    if table.empty:
        return None
    table = table.set_index("genre")
    table["threshold"] = [manifest["thresholds"].get(g) for g in table.index]
    columns = [c for c in ("support", "ap", "f1", "roc_auc", "threshold") if c in table]
    return table[columns].rename(columns={"ap": "AP", "f1": "F1", "roc_auc": "ROC AUC"})
