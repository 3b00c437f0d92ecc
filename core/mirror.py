"""A local mirror of an ``s3://`` data dir: pull a prefix from the bucket, push what changed.

When the data dir is an ``s3://bucket/prefix`` URI, ``settings.data_dir`` is a local folder
under the cache dir (``<cache_dir>/data/<key>``, see config.settings) and every stage works
on it as on any data dir. The stages' edges call this module: ``pull`` before they read a
part of the data dir, ``push`` after they wrote one. With a local data dir both are no-ops,
so the stages call them unconditionally.

The API (paths are relative to the data dir, with ``/``):

- ``pull(settings, *prefixes)``: bring each folder (prefix), or single file, up to date.
  Only files whose remote size or mtime differ from what this mirror last saw are
  downloaded; a file deleted in the bucket is deleted here too unless it changed here
  since. Local files the bucket does not have are left alone.
- ``push(settings, *prefixes, last=...)``: upload each file under the prefixes (or the
  file a prefix names) that changed here since it was last pulled or pushed, one whole
  object per file (a reader of the bucket never sees half a file); files whose basename
  is in ``last`` go after the rest, so a manifest appears only once what it describes is
  there. Push never deletes.
- ``pull_paths(settings, paths)``: just these files (a dataset's images, say).
- ``mirror_of(settings)``: the ``Mirror`` itself, or None for a local data dir.

Two machines that write the same file: a push first compares the bucket's object with
what this mirror last saw of it. If another machine changed it since (two imports into
one dataset at once), the push stops with a ``StorageError`` naming the file, rather than
silently replacing the other's work; an identical object (a content-addressed image both
imported) is not a conflict, and ``keep_theirs`` leaves the bucket's copy of a cache file
(feature parts, named by their rows) without stopping. The check narrows the window, it
cannot close it: S3 offers pyarrow no compare-and-swap. Writers of different files (two
trainings, two models) never meet.

What this mirror last saw lives in ``<mirror>/.mirror/state.json`` (never in the bucket:
it describes one machine's copy); a lock file beside it serialises the processes of one
machine that share the mirror (a worker's children). Dot-files and dot-folders are never
pushed: they are temp files, locks and this state.

Remote change is seen by size and mtime, as ``aws s3 sync`` does: a rewrite of the same
size within the store's mtime resolution goes unseen. Where that matters, the caller
passes ``expect`` (sha256 per path) and a mismatch is refused (models.remote does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from anigenre.core.atomic import write_bytes_atomic, write_text_atomic
from anigenre.core.errors import DataError, StorageError
from anigenre.core.storage import Store, StoredFile, open_store

STATE_DIR = ".mirror"
STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class Mirror:
    """``root``, a local folder, mirroring ``store``, a remote prefix."""

    store: Store
    root: Path

    def pull(
        self,
        prefix: str = "",
        *,
        recursive: bool = True,
        select: Callable[[str], bool] | None = None,
        expect: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Download what changed in the bucket under ``prefix`` (the files ``select``
        keeps); returns the paths downloaded. A file whose sha256 differs from
        ``expect[path]`` is a ``DataError`` and is not written."""
        remote = {
            f.path: f
            for f in self._remote(prefix, recursive)
            if not _hidden(f.path) and (select is None or select(f.path))
        }
        fetched = []
        with self._state() as state:
            for rel, info in remote.items():
                entry = state.get(rel)
                local = self.root / rel
                if entry and entry["remote"] == _sig(info) and local.exists():
                    continue
                data = self.store.read_bytes(rel)
                want = (expect or {}).get(rel)
                if want is not None and hashlib.sha256(data).hexdigest() != want:
                    raise DataError(
                        f"{self.store.uri_of(rel)} does not match the sha256 recorded for it "
                        "(damaged or replaced in the bucket); it was not used: copy it again"
                    )
                write_bytes_atomic(local, data)
                state[rel] = {"remote": _sig(info), "local": _local_sig(local)}
                fetched.append(rel)
            for rel in [r for r in state if _under(r, prefix, recursive) and r not in remote]:
                if select is not None and not select(rel):
                    continue
                # Gone from the bucket: gone here too, unless it changed here since.
                local = self.root / rel
                if _local_sig(local) == state[rel]["local"]:
                    with contextlib.suppress(FileNotFoundError):
                        local.unlink()
                del state[rel]
        return fetched

    def push(
        self, prefix: str = "", *, last: Collection[str] = (), keep_theirs: bool = False
    ) -> list[str]:
        """Upload the files under ``prefix`` that changed here since they were last pulled
        or pushed; returns their paths. Basenames in ``last`` are uploaded last. With
        ``keep_theirs``, a file another machine changed meanwhile is left as it is in the
        bucket instead of stopping the push (a cache whose copies are equivalent)."""
        with self._state() as state:
            changed = [
                rel
                for rel, sig in _walk(self.root, prefix)
                if rel not in state or state[rel]["local"] != sig
            ]
            if not changed:
                return []
            changed.sort(key=lambda rel: (PurePosixPath(rel).name in last, rel))
            remote = {f.path: f for f in self._remote(prefix, True)}
            pushed: list[str] = []
            for rel in changed:
                local = self.root / rel
                data = local.read_bytes()
                seen = state.get(rel, {}).get("remote")
                there = remote.get(rel)
                if there is not None and _sig(there) != seen:
                    if keep_theirs:
                        state[rel] = {"remote": _sig(there), "local": _local_sig(local)}
                        continue
                    if self.store.read_bytes(rel) != data:
                        raise StorageError(
                            f"{self.store.uri_of(rel)} changed in the bucket since this machine "
                            "last pulled it (another machine wrote it meanwhile); nothing of "
                            "yours replaced it: run the command again to redo it on top",
                            self.store.uri_of(rel),
                        )
                else:
                    self.store.write_bytes(rel, data)
                state[rel] = {"remote": None, "local": _local_sig(local)}
                pushed.append(rel)
            # The objects' new size and mtime, so the next pull knows them as ours.
            after = {f.path: f for f in self._remote(prefix, True)}
            for rel in pushed:
                if rel in after:
                    state[rel]["remote"] = _sig(after[rel])
        return pushed

    def _remote(self, prefix: str, recursive: bool) -> list[StoredFile]:
        files = self.store.list_files(prefix, recursive=recursive)
        if files or not prefix.strip("/"):
            return files
        # Nothing under it as a folder: it may name one file (runs/<id>.json).
        parent = PurePosixPath(prefix.strip("/")).parent.as_posix()
        siblings = self.store.list_files("" if parent == "." else parent, recursive=False)
        return [f for f in siblings if f.path == prefix.strip("/")]

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        folder = self.root / STATE_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = open(folder / "lock", "a")  # noqa: SIM115 - held for the whole sync
        except OSError as exc:
            raise StorageError.from_os(exc, folder) from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = _read_state(folder / STATE_FILE)
            before = json.dumps(state, sort_keys=True)
            try:
                yield state
            finally:
                # Also after a failure: what was fetched or pushed before it is recorded.
                body = {"version": STATE_VERSION, "store": self.store.uri, "files": state}
                if json.dumps(state, sort_keys=True) != before:
                    write_text_atomic(folder / STATE_FILE, json.dumps(body, sort_keys=True))


def mirror_of(settings) -> Mirror | None:
    """The mirror of ``settings``' data dir; None when the data dir is a local folder."""
    if not getattr(settings, "data_uri", None):
        return None
    return Mirror(open_store(settings.data_uri, settings.s3), Path(settings.data_dir))


def pull(settings, *prefixes: str, recursive: bool = True) -> list[str]:
    """Bring each prefix of the mirror up to date from the bucket; a no-op locally."""
    mirror = mirror_of(settings)
    if mirror is None:
        return []
    return [rel for p in prefixes for rel in mirror.pull(p, recursive=recursive)]


def push(
    settings, *prefixes: str, last: Collection[str] = (), keep_theirs: bool = False
) -> list[str]:
    """Upload what changed here under each prefix; a no-op locally."""
    mirror = mirror_of(settings)
    if mirror is None:
        return []
    return [rel for p in prefixes for rel in mirror.push(p, last=last, keep_theirs=keep_theirs)]


def pull_paths(settings, paths: Iterable[str]) -> list[str]:
    """Bring just these files up to date, one listing per folder they are in."""
    mirror = mirror_of(settings)
    if mirror is None:
        return []
    folders: dict[str, set[str]] = {}
    for rel in paths:
        rel = PurePosixPath(rel).as_posix()
        folders.setdefault(PurePosixPath(rel).parent.as_posix(), set()).add(rel)
    fetched = []
    for folder, wanted in sorted(folders.items()):
        prefix = "" if folder == "." else folder
        fetched += mirror.pull(prefix, recursive=False, select=wanted.__contains__)
    return fetched


def _sig(info: StoredFile) -> list:
    return [info.size, info.mtime_ns]


def _local_sig(path: Path) -> list | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(rel).parts)


def _under(rel: str, prefix: str, recursive: bool) -> bool:
    prefix = prefix.strip("/")
    if rel == prefix:
        return True
    if prefix and not rel.startswith(prefix + "/"):
        return False
    rest = rel[len(prefix) + 1 :] if prefix else rel
    return recursive or "/" not in rest


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, list]]:
    base = root / prefix if prefix else root
    if base.is_file():  # a prefix may name one file
        sig = _local_sig(base)
        if sig is not None and not _hidden(prefix):
            yield base.relative_to(root).as_posix(), sig
        return
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            sig = _local_sig(path)
            if sig is not None:
                yield path.relative_to(root).as_posix(), sig


def _read_state(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A damaged state only costs downloads: everything is fetched afresh.
        return {}
    if not isinstance(body, dict) or body.get("version") != STATE_VERSION:
        return {}
    files = body.get("files")
    return files if isinstance(files, dict) else {}
