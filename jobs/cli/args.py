"""Argument types shared by subcommands; each raises a message that says what to type."""

from __future__ import annotations

import argparse
from pathlib import Path

from anigenre.core.errors import ConfigError
from anigenre.core.parsing import parse_formats, parse_year_range


def _typed(parse):
    """An argparse type from a core parser: its ConfigError becomes argparse's message."""

    def convert(text: str):
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


year_range = _typed(parse_year_range)
formats = _typed(parse_formats)


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


def add_include_seen(parser) -> None:
    """``--include-seen``, shared by ``evaluate`` and ``report``."""
    parser.add_argument(
        "--include-seen",
        action="store_true",
        help="also score posters the model was trained or tuned on (flattering)",
    )


def storage_location(text: str):
    """A local path (a Path) or an ``s3://bucket/prefix`` URI (text); an unknown scheme
    is refused here, in one line. The Queue page parses its folder with the same function."""
    from anigenre.core.storage import parse_storage_location  # pyarrow: not at every CLI start

    return _typed(parse_storage_location)(text)


def local_path(text: str) -> Path:
    """A path on this machine. Flags that read a labelled folder or write charts take no
    ``s3://`` URI: refused here, where ``Path`` would silently fold it into ``s3:/...``."""
    from anigenre.core.storage import expand_home, is_remote

    if is_remote(text):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a local path; this flag reads or writes files on this machine "
            "(copy from the bucket first, e.g. 'aws s3 sync')"
        )
    return _typed(expand_home)(Path(text))  # a quoted '~' must not become a folder "~"
