"""Which posters a model was trained or tuned on. Scoring a model on them flatters it, so
``evaluate`` and ``report`` leave them out unless asked, and say how many they left out."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# The manifest key: sorted sha256 of every train and validation poster.
SEEN_KEY = "seen_sha256"
SEEN_SPLITS = ("train", "val")


class SeenRecord(Protocol):
    """What a model's manifest (models.manifest.Manifest) says about its training posters."""

    @property
    def model_id(self) -> str: ...

    @property
    def seen(self) -> Sequence[str] | None: ...  # None: trained before they were recorded


@dataclass(frozen=True)
class SeenSplit:
    keep: np.ndarray  # bool per poster: score it
    note: str  # the one line that says what was scored
    n_seen: int | None  # None: the model has no record


def seen_record(splits: Sequence[str], shas: Sequence[str]) -> list[str]:
    """The sha256 of the posters in the train and validation splits, sorted."""
    return sorted({s for split, s in zip(splits, shas, strict=True) if split in SEEN_SPLITS})


def split_seen(
    manifest: SeenRecord | None, shas: Sequence[str | None], include_seen: bool
) -> SeenSplit:
    """Which of the posters with these sha256 (None: unreadable) to score; ``manifest``
    None: no model is known."""
    n = len(shas)
    recorded = manifest.seen if manifest is not None else None
    if recorded is None:
        return SeenSplit(
            np.ones(n, dtype=bool),
            f"model {manifest.model_id if manifest is not None else '?'} predates the record "
            "of its training "
            f"posters, so seen ones cannot be left out: scored on all {n}",
            None,
        )
    seen = set(recorded)
    mask = np.array([s in seen for s in shas], dtype=bool)
    k = int(mask.sum())
    head = f"{k} of {n} posters were in the model's training or validation data"
    if include_seen:
        note = f"{head}; scored on all {n} (--include-seen: seen posters flatter the model)"
        return SeenSplit(np.ones(n, dtype=bool), note, k)
    return SeenSplit(~mask, f"{head}; scored on {n - k}", k)


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None  # the predictor reports the file as skipped
