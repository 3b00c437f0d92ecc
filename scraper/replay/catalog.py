"""Recorded AniList pages and posters, queried the way AniList's Page/media query is."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from anigenre.core.errors import GraphQLError

RECORDED_AT = int(dt.datetime(2021, 12, 13, tzinfo=dt.UTC).timestamp())
_THREE_YEARS = 3 * 365 * 86400
MAX_PER_PAGE = 50

# Sort keys we honour, as AniList names them; *_DESC sorts descending.
_SORT_FIELDS = {
    "ID": lambda m, c: m["id"],
    "POPULARITY": lambda m, c: m.get("popularity") or 0,
    "SCORE": lambda m, c: m.get("averageScore") or 0,
    "UPDATED_AT": lambda m, c: c.updated_at[m["id"]],
    "START_DATE": lambda m, c: _date_key(m.get("startDate")),
}


def synthetic_updated_at(anilist_id: int) -> int:
    """The recording has no updatedAt: spread titles over the three years before it,
    deterministically, so incremental scrapes have distinct timestamps to work with."""
    return RECORDED_AT - (anilist_id * 2654435761) % _THREE_YEARS


@dataclass
class Catalog:
    by_year: dict[int, list[dict]]
    posters: dict[int, Path]
    updated_at: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, pages_dir: Path, posters_dir: Path | None = None) -> Catalog:
        by_year: dict[int, list[dict]] = {}
        for path in sorted(Path(pages_dir).glob("*.json"), key=_page_order):
            year = int(path.stem.split("-")[0])
            media = json.loads(path.read_text())["data"]["Page"]["media"]
            for record in media:
                record["seasonYear"] = year  # the recording was filtered by it
            by_year.setdefault(year, []).extend(media)
        if not by_year:
            raise FileNotFoundError(f"no recorded pages (*.json) in {pages_dir}")
        posters = _poster_files(posters_dir) if posters_dir else {}
        updated = {m["id"]: synthetic_updated_at(m["id"]) for ms in by_year.values() for m in ms}
        return cls(by_year, posters, updated)

    def ids(self, years: tuple[int, int] | None = None) -> set[int]:
        return {
            m["id"]
            for y, ms in self.by_year.items()
            if years is None or years[0] <= y <= years[1]
            for m in ms
        }

    def bump(self, ids: list[int], at: int) -> None:
        with self._lock:
            for i in ids:
                if i not in self.updated_at:
                    raise KeyError(i)
                self.updated_at[i] = at

    def page(self, variables: dict, cover_base: str) -> dict:
        """Answer the Page/media query for ``variables`` as AniList would."""
        page = max(int(variables.get("page") or 1), 1)
        per_page = min(max(int(variables.get("perPage") or MAX_PER_PAGE), 1), MAX_PER_PAGE)
        media = self._select(variables)
        start = (page - 1) * per_page
        chunk = media[start : start + per_page]
        last_page = max((len(media) + per_page - 1) // per_page, 1)
        return {
            "Page": {
                "pageInfo": {
                    "total": len(media),
                    "perPage": per_page,
                    "currentPage": page,
                    "lastPage": last_page,
                    "hasNextPage": start + per_page < len(media),
                },
                "media": [self._render(m, cover_base) for m in chunk],
            }
        }

    def _select(self, variables: dict) -> list[dict]:
        year = variables.get("seasonYear")
        if year is not None:
            media = list(self.by_year.get(int(year), []))
        else:
            media = [m for y in sorted(self.by_year) for m in self.by_year[y]]
        formats = variables.get("format_in")
        if formats:
            media = [m for m in media if m.get("format") in set(formats)]
        if variables.get("isAdult") is not None:
            media = [m for m in media if bool(m.get("isAdult")) == bool(variables["isAdult"])]
        sorts = variables.get("sort") or []
        if isinstance(sorts, str):
            sorts = [sorts]
        with self._lock:
            for key in reversed(sorts):  # stable sorts, least significant first
                name, desc = (key[:-5], True) if key.endswith("_DESC") else (key, False)
                if name not in _SORT_FIELDS:
                    raise GraphQLError(f'Variable "$sort" got invalid value "{key}"')
                media.sort(key=lambda m, f=_SORT_FIELDS[name]: f(m, self), reverse=desc)
        return media

    def _render(self, record: dict, cover_base: str) -> dict:
        out = copy.deepcopy(record)
        title = out.get("title") or {}
        title.setdefault("romaji", None)
        title.setdefault("english", None)
        out["title"] = title
        out.setdefault("idMal", None)
        out["updatedAt"] = self.updated_at[record["id"]]
        cover = out.get("coverImage") or {}
        for size in ("extraLarge", "large"):
            if cover.get(size):
                cover[size] = (
                    f"{cover_base}/covers/{size}/{record['id']}{self._ext(record, cover[size])}"
                )
        out["coverImage"] = cover
        return out

    def _ext(self, record: dict, original_url: str) -> str:
        poster = self.posters.get(record["id"])
        return poster.suffix if poster else Path(original_url).suffix


def _poster_files(posters_dir: Path) -> dict[int, Path]:
    out = {}
    with open(Path(posters_dir) / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("anilist_id"):
                out[int(row["anilist_id"])] = Path(posters_dir) / "images" / row["file"]
    return out


def _page_order(path: Path) -> tuple[int, int]:
    year, page = path.stem.split("-")
    return int(year), int(page)


def _date_key(date: dict | None) -> tuple[int, int, int]:
    date = date or {}
    return (date.get("year") or 0, date.get("month") or 0, date.get("day") or 0)
