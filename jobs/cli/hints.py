"""Commands quoted in hints, written so they work when pasted: with the data dir in use."""

from __future__ import annotations

import shlex
from pathlib import Path

from anigenre.config import Settings

_DEFAULT_DATA_DIR = Path("data")


def command(settings: Settings, rest: str) -> str:
    """``anigenre [--data-dir DIR] REST``; the flag only when the data dir is not ./data."""
    if settings.data_uri:
        return f"anigenre --data-dir {shlex.quote(settings.data_uri)} {rest}"
    if Path(settings.data_dir) == _DEFAULT_DATA_DIR:
        return f"anigenre {rest}"
    return f"anigenre --data-dir {shlex.quote(str(settings.data_dir))} {rest}"


def masked_url(url: str) -> str:
    """``url`` with its password (if any) as ``**``: hints land in terminals and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:**@{host}{port}"))
