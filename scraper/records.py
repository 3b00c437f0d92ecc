"""AniList media record -> media table row. Pure."""

from __future__ import annotations

import datetime as dt

from bs4 import BeautifulSoup


def media_row(record: dict, scraped_at: dt.datetime) -> dict:
    title = record.get("title") or {}
    cover = record.get("coverImage") or {}
    start = record.get("startDate") or {}
    edges = (record.get("studios") or {}).get("edges") or []
    updated = record.get("updatedAt")
    return {
        "anilist_id": int(record["id"]),
        "id_mal": record.get("idMal"),
        "title": title.get("userPreferred") or title.get("romaji") or title.get("english"),
        "title_romaji": title.get("romaji"),
        "title_english": title.get("english"),
        "year": record.get("seasonYear") or start.get("year"),
        "start_date": _full_date(start),
        "season": record.get("season"),
        "format": record.get("format"),
        "status": record.get("status"),
        "episodes": record.get("episodes"),
        "duration": record.get("duration"),
        "genres": list(record.get("genres") or []),
        # None stays None: an unscored title is not a title scored 0.
        "average_score": record.get("averageScore"),
        "popularity": record.get("popularity"),
        "studios": [e["node"]["name"] for e in edges if e.get("node")],
        "main_studios": [e["node"]["name"] for e in edges if e.get("node") and e.get("isMain")],
        "is_adult": record.get("isAdult"),
        "cover_url": cover.get("extraLarge"),
        "cover_url_large": cover.get("large"),
        "cover_color": cover.get("color"),
        "description_text": html_to_text(record.get("description")),
        "updated_at": dt.datetime.fromtimestamp(updated, dt.UTC) if updated else None,
        "scraped_at": scraped_at,
    }


def html_to_text(html: str | None) -> str | None:
    """AniList descriptions are HTML fragments (``<br>``, ``<i>``); keep the words and breaks."""
    if html is None:
        return None
    soup = BeautifulSoup(html, "html.parser")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    lines = (line.strip() for line in soup.get_text().splitlines())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def _full_date(start: dict) -> dt.date | None:
    y, m, d = start.get("year"), start.get("month"), start.get("day")
    if not (y and m and d):
        return None
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None
