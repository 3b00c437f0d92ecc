"""Where a caller from elsewhere may point a run: inside the configured roots only
(``api_roots``, ``ANIGENRE_API_ROOTS``). No roots: anywhere this process may go."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from anigenre.core.storage import is_remote


def outside_roots(location: Path | str, roots: Sequence[str]) -> bool:
    """Whether ``location`` (a local path, or an ``s3://bucket/prefix`` URI) lies outside
    every root. A local path is compared after links and ``..`` are resolved, so neither
    leads out of a root; a URI is compared by whole path segments, and one with a ``..``
    or ``.`` segment (S3 keeps them as written, other stores fold them) is outside."""
    if not roots:
        return False
    text = str(location)
    if is_remote(text):
        scheme, _, rest = text.partition("://")
        parts = [p for p in rest.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return True
        return not any(_under_uri(scheme, parts, root) for root in roots if is_remote(root))
    where = Path(os.path.realpath(text))
    for root in roots:
        if is_remote(root):
            continue
        base = Path(os.path.realpath(os.path.expanduser(root)))
        if where == base or base in where.parents:
            return False
    return True


def _under_uri(scheme: str, parts: list[str], root: str) -> bool:
    root_scheme, _, rest = root.partition("://")
    base = [p for p in rest.split("/") if p]
    return root_scheme == scheme and parts[: len(base)] == base
