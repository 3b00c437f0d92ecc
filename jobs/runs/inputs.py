"""Inputs in object storage: ``s3://`` files and folders, found, hashed and read through
core.storage, so a worker on any machine reads a poster by the URI in its run's plan.

A remote input's row says its full URI (``s3://bucket/posters/a.png``): the path is the
key the exactly-once rules compare, as a local input's absolute path is.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from pathlib import PurePosixPath

from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.core.storage import S3Options, Store, is_remote, open_store

__all__ = ["InputReader", "is_remote", "remote_files"]


def remote_files(uri: str, suffixes: set[str], s3: S3Options | None) -> list[str]:
    """The URI of a file, or of every file with an image suffix under a prefix."""
    store = open_store(uri, s3)
    if store.is_file():
        return [store.uri]
    found = [
        store.uri_of(f.path)
        for f in store.list_files()
        if PurePosixPath(f.path).suffix.lower() in suffixes
    ]
    if not found and not store.exists():
        raise ConfigError(f"{store.uri} does not exist; give image files or folders")
    return found


def read_regular_file(path: str) -> bytes:
    """The bytes of a local regular file; anything else (a FIFO, a folder, a device) is an
    ``OSError`` saying what it is. Opened without blocking: reading a FIFO would wait
    for a writer for ever, and a device such as /dev/zero never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"{_kind(mode)}, not an image file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class InputReader:
    """Bytes of an input by its path or URI; one Store per bucket, shared by the decode
    threads. A remote read that fails is an ``OSError``, as a local one is, so the file
    gets an ``unreadable`` error row and the chunk goes on."""

    def __init__(self, s3: S3Options | None = None) -> None:
        self._s3 = s3
        self._buckets: dict[str, Store] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> bytes:
        if not is_remote(path):
            return read_regular_file(path)
        bucket, _, key = path.partition("://")[2].partition("/")
        with self._lock:
            store = self._buckets.get(bucket)
            if store is None:
                store = self._buckets[bucket] = open_store(f"s3://{bucket}", self._s3)
        try:
            return store.read_bytes(key)
        except AnigenreError as exc:
            raise OSError(str(exc)) from exc

    def digest(self, path: str) -> tuple[int | None, str | None]:
        try:
            data = self(path)
        except OSError:
            return None, None
        return len(data), hashlib.sha256(data).hexdigest()
