"""Prediction rows: probabilities -> the predictions table's columns. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from anigenre.core.genres import Vocabulary
from anigenre.core.schemas import predictions_schema


def top_k(probs: np.ndarray, genres: Sequence[str], k: int) -> list[str]:
    order = np.argsort(-probs, kind="mergesort")[:k]
    return [genres[i] for i in order]


def above_thresholds(probs: np.ndarray, genres: Sequence[str], thresholds: np.ndarray) -> list[str]:
    """Genres at or over the model's tuned thresholds, most probable first."""
    hits = np.flatnonzero(probs >= thresholds)
    return [genres[i] for i in hits[np.argsort(-probs[hits], kind="mergesort")]]


def prediction_table(
    *,
    model_id: str,
    vocab: Vocabulary,
    thresholds: np.ndarray,
    top_k_n: int,
    items: Sequence[Mapping],
    now: dt.datetime,
) -> pa.Table:
    """``items``: dicts with path, sha256 and either ``probs`` (array) or ``error`` (str)."""
    columns = vocab.columns()
    rows = []
    for item in items:
        probs = item.get("probs")
        row = {
            "model_id": model_id,
            "path": item["path"],
            "sha256": item.get("sha256"),
            "status": "ok" if probs is not None else "error",
            "error": item.get("error"),
            "predicted_at": now,
        }
        if probs is not None:
            row.update(zip(columns, (float(p) for p in probs), strict=True))
            row["top_genres"] = top_k(probs, vocab.genres, top_k_n)
            row["predicted"] = above_thresholds(probs, vocab.genres, thresholds)
        rows.append(row)
    schema = predictions_schema(columns)
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)
