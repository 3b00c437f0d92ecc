"""Parsers for the values users type: year ranges and AniList formats.

Shared by the CLI's argument types, the settings' validators and the queued tasks, so a
value means the same wherever it is given. Each raises ConfigError with what to type.
"""

from __future__ import annotations

from anigenre.core.errors import ConfigError

ANIME_FORMATS = ("TV", "TV_SHORT", "MOVIE", "SPECIAL", "OVA", "ONA", "MUSIC")


def parse_year_range(text: str) -> tuple[int, int]:
    """``2013-2021`` or ``2015``."""
    first, sep, last = str(text).partition("-")
    try:
        start, end = int(first), int(last) if sep else int(first)
    except ValueError:
        raise ConfigError(
            f"'{text}' is not a year range; write it like 2013-2021 or 2015"
        ) from None
    if not (1900 <= start <= end <= 2100):
        raise ConfigError(
            f"'{text}' is not a year range from an earlier to a later year between 1900 and 2100"
        )
    return start, end


def parse_formats(text: str) -> tuple[str, ...]:
    """``TV,MOVIE``: AniList MediaFormat names for anime, case-insensitive."""
    names = tuple(f.strip().upper() for f in text.split(",") if f.strip())
    bad = [n for n in names if n not in ANIME_FORMATS]
    if bad or not names:
        raise ConfigError(
            f"unknown format {', '.join(bad) or repr(text)}; choose from {','.join(ANIME_FORMATS)}"
        )
    return names
