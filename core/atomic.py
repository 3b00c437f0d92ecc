"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from anigenre.core.errors import StorageError


@contextlib.contextmanager
def atomic_path(target: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The temp file lives in the same directory so ``os.replace`` is a rename on one
    filesystem, which POSIX makes atomic. On failure the temp file is removed.
    ``tmp_dir`` puts it elsewhere, for a folder that readers list while it is written;
    it must be on ``target``'s filesystem.

    An ``OSError`` on the way (a full disk, a read-only mount, a file where a folder must
    be) becomes a ``StorageError`` that names ``target``: the temp name would mean nothing
    to a user, and pyarrow's errors often name no path at all.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tmp_dir) if tmp_dir is not None else target.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise StorageError.from_os(exc, target) from exc
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StorageError.from_os(exc, target) from exc
        raise


def write_bytes_atomic(target: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    with atomic_path(target, tmp_dir) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
