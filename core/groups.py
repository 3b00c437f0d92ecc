"""Franchise groups for titles that come without one.

AniList has relations, but the scrape does not follow them; and imported folders may
have no ``group`` column. The heuristic: lower-case the title, cut it at the first
subtitle separator (``: ``, `` -``, `` ~``, `` (``), then strip trailing sequel markers
("season 2", "2nd season", "part II", "final season", "movie", "ova", "the movie",
bare numbers and roman numerals) and punctuation. "Attack on Titan Season 3 Part 2"
and "Attack on Titan: Junior High" both become "attack on titan". It errs towards
merging: two unrelated shows that share a stem land together, which costs a little
split balance but never leaks a franchise across splits.
"""

from __future__ import annotations

import re
import unicodedata

_SUBTITLE = re.compile(r"\s*(?::\s|\s-|\s~|\s–\s|\s\().*$")
_TRAILING = re.compile(
    r"""(?:\s+|^)(?:
        (?:the\s+)?(?:final\s+)?season(?:\s+\d+)?
      | \d+(?:st|nd|rd|th)\s+season
      | (?:part|cour|vol\.?|volume|chapter)\s+(?:\d+|[ivx]+)
      | (?:the\s+)?movie(?:\s+\d+)?
      | (?:ova|ona|oad|special|specials|tv|recap|film)
      | s\d+
      | \d+
      | [ivx]+
    )\s*$""",
    re.VERBOSE,
)


def title_stem(title: str | None) -> str:
    if not isinstance(title, str) or not title:  # None, or NaN from a parquet round trip
        return ""
    text = unicodedata.normalize("NFKC", title).lower().strip()
    text = _SUBTITLE.sub("", text) or text
    text = re.sub(r"[!?.,'’\"*★☆♪]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    while True:
        stripped = _TRAILING.sub("", text).strip()
        if stripped == text or not stripped:
            return text
        text = stripped


def group_for(title: str | None, fallback: str) -> str:
    """A group name from the title's stem, or ``fallback`` (an id) when there is no title."""
    stem = title_stem(title)
    return f"t:{stem}" if stem else fallback


def linked_groups(groups, titles, anilist_ids) -> list[str]:
    """Merge groups that share a title stem or an AniList id (union-find).

    Rows arrive with groups from different sources (a ``group`` column, a title stem, an
    id), and one franchise can carry different names in each; splitting on the linked
    component keeps it on one side. The component is named after its smallest group name.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group, title, anilist_id in zip(groups, titles, anilist_ids, strict=True):
        stem = title_stem(title)
        if stem:
            union(group, f"t:{stem}")
        if not _missing(anilist_id):
            union(group, f"id:{int(anilist_id)}")
        find(group)
    return [find(g) for g in groups]


def _missing(value) -> bool:
    """None, NaN (a null read back from parquet) or pandas' NA."""
    try:
        return value is None or bool(value != value)  # NaN is not equal to itself
    except TypeError:  # pd.NA refuses bool()
        return True
