"""Where files live: a local folder or an ``s3://bucket/prefix``, behind one small interface.

A ``Store`` is a root location on a pyarrow filesystem; every path it takes is relative to
that root and uses ``/``. Local writes are atomic (temp file + rename, ``core.atomic``). On
S3 there is no rename, and none is needed: an object appears whole when its upload
completes, so a reader sees the old object or the new one, never half of either.

S3 credentials and endpoint come from the standard AWS variables (``S3Options.from_env``),
so MinIO, Ceph, R2 and moto's server work as S3 does. Nothing here reads ``os.environ``:
the options are passed in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from anigenre.core.atomic import write_bytes_atomic
from anigenre.core.errors import ConfigError, StorageError

SCHEMES = ("s3",)


@dataclass(frozen=True)
class S3Options:
    """What pyarrow needs to reach an S3-compatible store. Unset fields fall back to
    pyarrow's own chain (instance profile, ~/.aws/config)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    # repr=False: settings objects get printed and logged; secrets must not be.
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Options:
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = {"region": self.region or "us-east-1"}
        if self.access_key_id and self.secret_access_key:
            kwargs.update(access_key=self.access_key_id, secret_key=self.secret_access_key)
            if self.session_token:
                kwargs["session_token"] = self.session_token
        if self.endpoint_url:
            kwargs.update(
                endpoint_override=_endpoint(self.endpoint_url), scheme=_scheme_of(self.endpoint_url)
            )
        return pafs.S3FileSystem(**kwargs)


def _endpoint(url: str) -> str:
    """``host[:port]`` of an endpoint URL, or a ``ConfigError`` naming the variable: a typo
    here must be one line at start-up, not a traceback or a DNS error minutes later."""
    bad = ConfigError(f"AWS_ENDPOINT_URL '{url}' is not an http(s) URL, e.g. http://127.0.0.1:9000")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    return parts.netloc


def _scheme_of(url: str) -> str:
    return urlsplit(url).scheme


def is_remote(location: str | os.PathLike) -> bool:
    """True for a URI with a scheme (``s3://...``); False for a local path."""
    return _scheme(str(location)) not in ("", "file")


def open_store(location: str | os.PathLike, s3: S3Options | None = None) -> Store:
    """The ``Store`` for a local path, ``file://`` URI or ``s3://bucket/prefix``.

    Any other scheme is a ``ConfigError``: a URI must never become a local folder named
    after its scheme (``s3:``), which is what ``Path('s3://b/p')`` would silently make."""
    text = os.fspath(location)
    scheme = _scheme(text)
    if scheme in ("", "file"):
        local = expand_home(Path(urlsplit(text).path if scheme == "file" else text))
        return Store(pafs.LocalFileSystem(), local.absolute().as_posix(), str(local))
    if scheme not in SCHEMES:
        raise ConfigError(
            f"'{text}': unsupported storage scheme '{scheme}://'; "
            "use a local path or s3://bucket/prefix"
        )
    parts = urlsplit(text)
    if not parts.netloc:
        raise ConfigError(f"'{text}' names no bucket; write s3://bucket/prefix")
    root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    return Store((s3 or S3Options()).filesystem(), root, f"s3://{root}")


def parse_storage_location(text: str) -> Path | str:
    """A local path (a Path) or an ``s3://bucket/prefix`` URI (kept as text: a Path would
    fold its ``//``). An unknown scheme or a URI with no bucket is a ConfigError."""
    if not is_remote(text):
        return expand_home(Path(text))
    return open_store(text).uri


def expand_home(path: Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; one that cannot be is a
    ``ConfigError``: a relative folder named "~" must never be created (a user who then
    cleans it up with 'rm -rf ~' deletes their home)."""
    try:
        expanded = Path(path).expanduser()
    except RuntimeError:  # no such user, or no home to be found
        expanded = Path(path)
    if expanded.parts and expanded.parts[0].startswith("~"):
        raise ConfigError(
            f"cannot expand '{expanded.parts[0]}' in '{path}' (no such user, or no home "
            "directory); give an absolute path"
        )
    return expanded


def _scheme(text: str) -> str:
    # "C:\\x" and "./a:b" are paths, not URIs: only "name://" counts as a scheme.
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isalnum() else ""


@dataclass(frozen=True)
class StoredFile:
    """One file under a store: ``path`` relative to the store's root."""

    path: str
    size: int
    mtime_ns: int | None


@dataclass(frozen=True)
class Store:
    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, *parts: str) -> Store:
        rel = _join(*parts)
        if not rel:
            return self
        return Store(self.fs, f"{self.root}/{rel}", f"{self.uri.rstrip('/')}/{rel}")

    def path(self, *parts: str) -> str:
        """The filesystem path, for pyarrow calls that take ``filesystem=store.fs``."""
        rel = _join(*parts)
        return f"{self.root}/{rel}" if rel else self.root

    def uri_of(self, *parts: str) -> str:
        rel = _join(*parts)
        return f"{self.uri.rstrip('/')}/{rel}" if rel else self.uri

    def local_path(self, *parts: str) -> Path:
        """The local path of a local store; a ``ConfigError`` for a remote one, for the
        few steps (a scrape's file lock, say) that need a real POSIX folder."""
        if not self.is_local:
            raise ConfigError(f"{self.uri}: this step needs a local folder, not object storage")
        return Path(self.path(*parts))

    # --- reading ---------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        return self._info(*parts).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        return self._info(*parts).type == pafs.FileType.File

    def read_bytes(self, *parts: str) -> bytes:
        path = self.path(*parts)
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if self._info(*parts).type == pafs.FileType.NotFound:
                raise FileNotFoundError(self.uri_of(*parts)) from exc
            raise StorageError(f"cannot read {self.uri_of(*parts)}: {exc}", path) from exc

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def read_table(self, *parts: str, schema: pa.Schema | None = None) -> pa.Table:
        try:
            return pq.read_table(self.path(*parts), filesystem=self.fs, schema=schema)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri_of(*parts)}: {exc}") from exc

    def list_files(self, *parts: str, recursive: bool = True) -> list[StoredFile]:
        """Files under a folder (prefix), sorted by path; empty when there is no such folder
        (a file of that name included: on S3 a key can be both, locally it cannot)."""
        base = self.path(*parts)
        if parts and self.is_file(*parts):
            return []
        selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri_of(*parts)}: {exc}") from exc
        offset = len(self.root) + 1
        files = [
            StoredFile(info.path[offset:], info.size or 0, info.mtime_ns)
            for info in infos
            if info.type == pafs.FileType.File
        ]
        return sorted(files, key=lambda f: f.path)

    # --- writing ---------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes, tmp_dir: str | None = None) -> None:
        """The whole of ``data`` at ``rel``, replacing what was there, never half-written.
        ``tmp_dir`` (under the root): where a local write keeps its temp file, for a
        folder that readers list while it is written. S3 needs none."""
        if self.is_local:
            staging = Path(self.path(tmp_dir)) if tmp_dir else None
            write_bytes_atomic(Path(self.path(rel)), data, staging)
            return
        try:
            # One object per call; S3 makes it visible only once the upload completes.
            with self.fs.open_output_stream(self.path(rel)) as fh:
                fh.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri_of(rel)}: {exc}", self.path(rel)) from exc

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))

    def write_table(self, rel: str, table: pa.Table, tmp_dir: str | None = None) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.write_bytes(rel, sink.getvalue().to_pybytes(), tmp_dir)

    def delete(self, *parts: str) -> None:
        """Remove a file; no error when it is already gone."""
        try:
            self.fs.delete_file(self.path(*parts))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if self.exists(*parts):
                raise StorageError(f"cannot delete {self.uri_of(*parts)}: {exc}") from exc

    def download(self, rel: str, target: Path) -> None:
        """Copy one file to a local path, atomically (a reader never sees half of it)."""
        write_bytes_atomic(Path(target), self.read_bytes(rel))

    def upload(self, source: Path, rel: str) -> None:
        self.write_bytes(rel, Path(source).read_bytes())

    def _info(self, *parts: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(*parts))
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri_of(*parts)}: {exc}") from exc


def _join(*parts: str) -> str:
    rel = PurePosixPath(*[p.strip("/") for p in parts if p and p.strip("/")]).as_posix()
    if rel == ".":
        return ""
    if ".." in PurePosixPath(rel).parts:
        # Relative paths come from ids and plans; one climbing out of the root is a bug
        # or a crafted input, and on S3 ".." is not even resolved.
        raise StorageError(f"refusing a path that leaves its folder: {rel}")
    return rel
