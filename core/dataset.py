"""Building the labelled dataset: filters, merging, split assignment, statistics. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anigenre.core.genres import Vocabulary
from anigenre.core.groups import group_for, linked_groups
from anigenre.core.splits import DEFAULT_FRACTIONS, SPLITS, grouped_stratified_split

COLUMNS = (
    "sha256",
    "path",
    "anilist_id",
    "title",
    "year",
    "group",
    "source",
    "genres",
    # The labels' convention: "anilist" (AniList's genres), "mal-mapped" (MyAnimeList's,
    # mapped), as a folder's labels.csv says; None where it says nothing. The trainer's
    # label_convention reads it.
    "label_source",
)


@dataclass(frozen=True)
class Filters:
    """The paper's filters, each optional. A poster whose download was not ok always goes."""

    years: tuple[int, int] | None = None
    require_score: bool = False
    require_studio: bool = False
    require_genres: bool = True


def from_scrape(
    media: pd.DataFrame, posters: pd.DataFrame, filters: Filters, vocab: Vocabulary
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Join media with posters, apply ``filters``; return rows and (filter, removed) counts."""
    poster_cols = posters[["anilist_id", "path", "sha256", "status"]].rename(
        columns={"status": "poster_status"}  # media has its own (airing) status
    )
    df = media.merge(poster_cols, on="anilist_id", how="left")
    steps: list[tuple[str, pd.Series]] = [("poster not ok", df["poster_status"] == "ok")]
    if filters.years:
        lo, hi = filters.years
        steps.append((f"year outside {lo}-{hi}", df["year"].between(lo, hi)))
    if filters.require_score:
        steps.append(("no average score", df["average_score"].notna()))
    if filters.require_studio:
        steps.append(("no main studio", df["main_studios"].map(_non_empty)))
    if filters.require_genres:
        steps.append(("no genres", df["genres"].map(_non_empty)))
    if len(vocab) == 18:
        steps.append(("adult title", ~df["is_adult"].fillna(False).astype(bool)))
    report = []
    for name, keep in steps:
        report.append((name, int((~keep.loc[df.index]).sum())))
        df = df[keep.loc[df.index]]
    rows = pd.DataFrame(
        {
            "sha256": df["sha256"],
            "path": df["path"],
            "anilist_id": df["anilist_id"],
            "title": df["title"],
            "year": df["year"],
            "group": [
                group_for(t, f"id:{i}") for t, i in zip(df["title"], df["anilist_id"], strict=True)
            ],
            "source": "scrape",
            "genres": df["genres"].map(list),
            "label_source": "anilist",
        }
    )
    vocab.check(g for gs in rows["genres"] for g in gs)
    return rows.reset_index(drop=True), report


def merge(
    existing: pd.DataFrame,
    new: pd.DataFrame,
    vocab: Vocabulary,
    *,
    replace_source: str | None = None,
    seed: int = 0,
    fractions=DEFAULT_FRACTIONS,
) -> tuple[pd.DataFrame, int]:
    """Add ``new`` rows to ``existing`` (deduplicated by sha256) and assign splits.

    Groups that already have a split keep it, also when ``replace_source`` drops and
    re-adds their rows, so a re-run never moves a franchise between train and test.
    Returns the merged frame and the number of new rows dropped as duplicates.
    """
    if replace_source is not None and len(existing):
        kept = existing[existing["source"] != replace_source]
    else:
        kept = existing
    kept, new = _with_label_source(kept), _with_label_source(new)
    combined = pd.concat([kept[list(COLUMNS)], new[list(COLUMNS)]], ignore_index=True)
    before = len(combined)
    # A poster imported before label sources were kept gets its source from a re-import.
    known = combined.dropna(subset=["label_source"]).drop_duplicates("sha256")
    combined["label_source"] = combined["label_source"].fillna(
        combined["sha256"].map(known.set_index("sha256")["label_source"])
    )
    combined = combined.drop_duplicates("sha256", keep="first").reset_index(drop=True)
    labels = vocab.encode(combined["genres"].tolist())
    combined["labels"] = list(labels.astype(np.int8))
    linked = linked_groups(combined["group"], combined["title"], combined["anilist_id"])
    combined["split"] = grouped_stratified_split(
        linked,
        labels,
        fractions=fractions,
        seed=seed,
        fixed=_existing_splits(existing, combined, linked),
    )
    return combined, before - len(combined)


def _with_label_source(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "label_source" in frame.columns else frame.assign(label_source=None)


def _existing_splits(existing: pd.DataFrame, combined: pd.DataFrame, linked: list[str]) -> dict:
    """Component -> split, from rows that had one (also rows a re-run just replaced).

    If new rows link two components that sat in different splits, the component goes
    where most of its earlier rows were: one franchise must not straddle splits.
    """
    if not len(existing):
        return {}
    old_split = dict(zip(existing["group"], existing["split"], strict=True))
    votes: dict[str, dict[str, int]] = {}
    for group, component in zip(combined["group"], linked, strict=True):
        if group in old_split:
            tally = votes.setdefault(component, {})
            tally[old_split[group]] = tally.get(old_split[group], 0) + 1
    return {c: max(t, key=lambda s: (t[s], s)) for c, t in votes.items()}


def fingerprint(dataset: pd.DataFrame) -> str:
    """A hash of what a model learns from: images, labels and splits, in a stable order."""
    h = hashlib.sha256()
    for sha, genres, split in sorted(
        zip(dataset["sha256"], dataset["genres"], dataset["split"], strict=True)
    ):
        h.update(f"{sha}|{'|'.join(sorted(genres))}|{split}\n".encode())
    return h.hexdigest()


def stats(dataset: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Per-genre positive counts per split, plus rows and label cardinality per split."""
    labels = np.stack(dataset["labels"].to_numpy()) if len(dataset) else np.zeros((0, len(vocab)))
    splits = dataset["split"].to_numpy()
    table = {}
    for name in (*SPLITS, "all"):
        part = labels if name == "all" else labels[splits == name]
        cardinality = float(part.sum(axis=1).mean()) if len(part) else 0.0
        table[name] = [*part.sum(axis=0).astype(int).tolist(), len(part), round(cardinality, 2)]
    # object dtype: counts print as integers while the last row stays a fraction.
    return pd.DataFrame(table, index=[*vocab.genres, "posters", "labels per poster"], dtype=object)


def _non_empty(value) -> bool:
    return value is not None and len(value) > 0
