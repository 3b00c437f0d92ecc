"""Train/val/test splits by group, iteratively stratified over the labels.

Sechidis, Tsoumakas & Vlahavas (2011), "On the stratification of multi-label data",
applied to groups (franchises) instead of samples so that no franchise is on both
sides of a split. One change: a label carried by at least as many groups as there are
splits first gets one group in each split, so rare genres can be evaluated everywhere.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def grouped_stratified_split(
    groups: Sequence[str],
    labels: np.ndarray,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    fixed: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Return the split name of each row. Rows of one group always share a split.

    ``fixed`` pins groups to splits (rows already in a dataset keep theirs); the
    targets are still the fractions of *all* rows, so new groups fill what is missing.
    """
    if len(groups) != len(labels):
        raise ValueError("groups and labels must have one entry per row")
    if abs(sum(fractions) - 1.0) > 1e-6 or len(fractions) != len(SPLITS):
        raise ValueError(f"fractions must be {len(SPLITS)} numbers summing to 1")
    labels = np.asarray(labels, dtype=np.int64)
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    rows = np.array([index[g] for g in groups], dtype=np.int64)
    counts = np.zeros((len(names), labels.shape[1]), dtype=np.int64)
    np.add.at(counts, rows, labels)
    sizes = np.bincount(rows, minlength=len(names))

    frac = np.asarray(fractions, dtype=np.float64)
    want_rows = frac * len(groups)
    want_labels = np.outer(frac, labels.sum(axis=0)).astype(np.float64)
    have_labels = np.zeros_like(want_labels)
    assigned = np.full(len(names), -1, dtype=np.int64)

    def assign(g: int, s: int) -> None:
        assigned[g] = s
        want_rows[s] -= sizes[g]
        want_labels[s] -= counts[g]
        have_labels[s] += counts[g]

    for group, split in (fixed or {}).items():
        if group in index:
            assign(index[group], SPLITS.index(split))

    rng = random.Random(seed)
    order = list(range(len(names)))
    rng.shuffle(order)
    groups_per_label = (counts > 0).sum(axis=0)
    while True:
        open_groups = [g for g in order if assigned[g] < 0]
        remaining = counts[open_groups].astype(bool).sum(axis=0) if open_groups else None
        if remaining is None or not remaining.any():
            break
        label = int(np.argmin(np.where(remaining > 0, remaining, np.iinfo(np.int64).max)))
        spread = groups_per_label[label] >= len(SPLITS)
        for g in (g for g in open_groups if counts[g, label] > 0):
            s = max(
                range(len(SPLITS)),
                key=lambda s: (
                    spread and have_labels[s, label] == 0,
                    want_labels[s, label],
                    want_rows[s],
                    rng.random(),
                ),
            )
            assign(g, s)
    for g in order:
        if assigned[g] < 0:  # groups with no labels at all: fill by size
            assign(g, int(np.argmax(want_rows)))
    return np.array(SPLITS, dtype=object)[assigned[rows]]


# The lockbox: franchise groups that no recipe choice may see, chosen by a salted hash of
# the group's name so that a group's place never depends on which other rows a dataset
# holds (adding a folder neither moves a group in nor out). Bench protocol, bench/transfer.py.
LOCKBOX_SALT = "anigenre-lockbox-1"
LOCKBOX_FRACTION = 0.35


def lockbox_mask(
    groups: Sequence[str],
    sources: Sequence[str | None],
    *,
    convention: str = "mal-mapped",
    fraction: float = LOCKBOX_FRACTION,
    salt: str = LOCKBOX_SALT,
) -> np.ndarray:
    """The rows of the lockbox: every row of each group whose rows all carry the
    ``convention`` label source (the held-out posters' convention) and whose salted hash
    falls below ``fraction``. ``groups`` should be linked (``core.groups.linked_groups``)
    so that no franchise is on both sides."""
    if len(groups) != len(sources):
        raise ValueError("groups and sources must have one entry per row")
    pure: dict[str, bool] = {}
    for g, s in zip(groups, sources, strict=True):
        pure[g] = pure.get(g, True) and s == convention

    def chosen(g: str) -> bool:
        digest = hashlib.sha256(f"{salt}:{g}".encode()).digest()
        return pure[g] and int.from_bytes(digest[:8], "big") / 2**64 < fraction

    picks = {g: chosen(g) for g in pure}
    return np.array([picks[g] for g in groups], dtype=bool)
