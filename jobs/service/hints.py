"""Commands quoted in messages, written so they work when pasted: with the data dir in use."""

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
