"""Argument types shared by subcommands; each raises a message that says what to type."""

from __future__ import annotations

import argparse

ANIME_FORMATS = ("TV", "TV_SHORT", "MOVIE", "SPECIAL", "OVA", "ONA", "MUSIC")


def year_range(text: str) -> tuple[int, int]:
    """``2013-2021`` or ``2015``."""
    first, sep, last = text.partition("-")
    try:
        start, end = int(first), int(last) if sep else int(first)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a year range; write it like 2013-2021 or 2015"
        ) from None
    if not (1900 <= start <= end <= 2100):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a year range from an earlier to a later year between 1900 and 2100"
        )
    return start, end


def formats(text: str) -> tuple[str, ...]:
    """``TV,MOVIE``: AniList MediaFormat names for anime, case-insensitive."""
    names = tuple(f.strip().upper() for f in text.split(",") if f.strip())
    bad = [n for n in names if n not in ANIME_FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(bad) or repr(text)}; choose from {','.join(ANIME_FORMATS)}"
        )
    return names


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive number")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive whole number")
    return int(text)


def image_size(text: str) -> tuple[int, int]:
    """``320x224``: height x width in pixels."""
    h, sep, w = text.lower().partition("x")
    if not (sep and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a size; write HEIGHTxWIDTH, e.g. 320x224"
        )
    return int(h), int(w)
