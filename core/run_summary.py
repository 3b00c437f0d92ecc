"""What a finished prediction run says, as one long table. Pure pandas."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BINS = np.round(np.linspace(0.0, 1.0, 11), 1)


def confidence(ok_rows: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each poster's highest genre probability."""
    return ok_rows[list(columns)].max(axis=1) if len(ok_rows) else pd.Series(dtype=float)


def summarize(rows: pd.DataFrame, genres: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Rows of (section, name, count): genre counts (predicted above threshold, and top-1),
    a confidence histogram, and errors by reason."""
    ok = rows[rows["status"] == "ok"]
    out = [("totals", "ok", len(ok)), ("totals", "error", int((rows["status"] == "error").sum()))]
    predicted = ok["predicted"].map(list) if len(ok) else pd.Series(dtype=object)
    top1 = (
        ok["top_genres"].map(lambda g: g[0] if len(g) else None)
        if len(ok)
        else pd.Series(dtype=object)
    )
    for genre in genres:
        out.append(("predicted_genre", genre, int(predicted.map(lambda g, x=genre: x in g).sum())))
        out.append(("top1_genre", genre, int((top1 == genre).sum())))
    hist, _ = np.histogram(confidence(ok, columns), bins=BINS)
    for lo, hi, n in zip(BINS[:-1], BINS[1:], hist, strict=True):
        out.append(("confidence_histogram", f"{lo:.1f}-{hi:.1f}", int(n)))
    reasons = rows.loc[rows["status"] == "error", "error"].fillna("").map(error_reason)
    for reason, n in reasons.value_counts().sort_index().items():
        out.append(("errors", reason, int(n)))
    return pd.DataFrame(out, columns=["section", "name", "count"]).astype({"count": "int64"})


def error_reason(message: str) -> str:
    """``"corrupt: image file is truncated"`` -> ``"corrupt"``."""
    return message.split(":", 1)[0].strip() or "unknown"
