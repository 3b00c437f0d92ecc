"""The Models page's data: each registered model's card and held-out figures, laid out from
the pieces of the model card (``models.card``). No Streamlit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from anigenre.models.card import headline, input_text, training_text, weights_sources
from anigenre.models.manifest import Manifest
from anigenre.models.registry import read_metrics

# The page spells out what the card's table calls "prior".
ROW_NAMES = {"prior": "prior baseline"}


@dataclass(frozen=True)
class Listed:
    manifest: Manifest
    is_latest: bool  # what ``--model latest`` means


def models_newest_first(models: list[Manifest]) -> list[Listed]:
    """``models`` oldest first, as the registry lists them."""
    return [Listed(m, i == len(models) - 1) for i, m in reversed(list(enumerate(models)))]


def header(listed: Listed, aliases: list[str], served: str) -> str:
    """``custom_cnn-2026... · production · latest · served``: the model's id, each name it
    answers to (aliases, then 'latest'), and whether the Try a poster page uses it
    (``served``: what ``anigenre web --model`` was given, an id or 'latest')."""
    names = [*sorted(aliases), *(["latest"] if listed.is_latest else [])]
    if served in (listed.manifest.model_id, *names):
        names.append("served")
    return " · ".join([listed.manifest.model_id, *names])


def card(manifest: Manifest) -> dict[str, str]:
    """What a person asks of a model before trusting it, as label -> text."""
    rows = manifest.dataset.rows
    return {
        "backbone": manifest.backbone,
        "weights": weights_sources(manifest.weights),
        "created": manifest.created,
        "input": input_text(manifest),
        "training": training_text(manifest.training),
        "dataset": ", ".join(f"{k} {v}" for k, v in sorted(rows.items())),
        "genres": str(len(manifest.genres)),
    }


def figures_table(manifest: Manifest) -> pd.DataFrame:
    """Held-out test figures of the model and of the prior baseline, with 95% intervals."""
    rows = [
        {"": ROW_NAMES.get(name, name), **figures}
        for name, figures in headline(manifest.metrics_summary)
    ]
    return pd.DataFrame(rows).set_index("")


def per_genre_table(data_dir: Path, manifest: Manifest) -> pd.DataFrame | None:
    """Per genre on the test split: support, AP, F1, ROC AUC, and the tuned threshold."""
    test = (read_metrics(data_dir, manifest.model_id) or {}).get("test")
    if not isinstance(test, dict):
        return None
    table = pd.DataFrame(test.get("per_genre", []))
    if table.empty:
        return None
    table = table.set_index("genre")
    table["threshold"] = [manifest.thresholds.get(g) for g in table.index]
    columns = [c for c in ("support", "ap", "f1", "roc_auc", "threshold") if c in table]
    return table[columns].rename(columns={"ap": "AP", "f1": "F1", "roc_auc": "ROC AUC"})
