"""Parallel decoding that keeps a model fed: per-file failures are values, never raised."""

from __future__ import annotations

import collections
import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from anigenre.core.errors import InvalidImage
from anigenre.core.images import decode_image


@dataclass(frozen=True)
class Decoded:
    path: str
    array: np.ndarray | None  # (h, w, 3) uint8 when ok
    error: str | None  # "reason: detail" when not

    @property
    def ok(self) -> bool:
        return self.array is not None


@dataclass(frozen=True)
class Batch:
    paths: list[str]
    arrays: np.ndarray  # (n_ok, h, w, 3) uint8, only the files that decoded
    ok: np.ndarray  # (len(paths),) bool: which paths are in ``arrays``
    errors: dict[str, str]  # path -> reason, for the rest


def decode_file(
    path: str | Path,
    size: tuple[int, int],
    policy: str,
    max_pixels: int,
    expect_sha256: str | None = None,
    read: Callable[[str], bytes] | None = None,
) -> Decoded:
    """Read and decode one file; with ``expect_sha256``, a file whose bytes changed since
    it was hashed is an error rather than a prediction for content nobody planned."""
    try:
        data = read(str(path)) if read is not None else Path(path).read_bytes()
    except OSError as exc:
        return Decoded(str(path), None, f"unreadable: {exc.strerror or exc}")
    if expect_sha256 is not None and hashlib.sha256(data).hexdigest() != expect_sha256:
        return Decoded(str(path), None, "changed: the file changed after the run was planned")
    try:
        return Decoded(str(path), decode_image(data, size, policy, max_pixels=max_pixels), None)
    except InvalidImage as exc:
        return Decoded(str(path), None, str(exc))


def iter_decoded(
    paths: Iterable[str | Path],
    decode: Callable[[str | Path], Decoded],
    *,
    workers: int = 4,
    prefetch: int = 64,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[Decoded]:
    """Decode in a thread pool (Pillow releases the GIL while decoding), in input order,
    with at most ``prefetch`` files in flight so memory stays bounded on huge folders.
    ``pool``: a caller's pool to decode in, kept open (a run of many chunks started
    ``workers`` threads per chunk otherwise); else one of ``workers`` threads."""
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="decode"))
        pending: collections.deque[Future[Decoded]] = collections.deque()
        try:
            for path in paths:
                pending.append(pool.submit(decode, path))
                if len(pending) >= prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # abandoned early: what was not started is not decoded for nobody
            for future in pending:
                future.cancel()


def iter_batches(
    decoded: Iterable[Decoded], batch_size: int, size: tuple[int, int]
) -> Iterator[Batch]:
    """Group decoded files into model-sized batches; failed files ride along as errors."""
    chunk: list[Decoded] = []
    for item in decoded:
        chunk.append(item)
        if len(chunk) == batch_size:
            yield batch_of(chunk, size)
            chunk = []
    if chunk:
        yield batch_of(chunk, size)


def batch_of(chunk: list[Decoded], size: tuple[int, int]) -> Batch:
    """``chunk`` as one batch: the decoded images stacked, the failures as errors."""
    good = [d.array for d in chunk if d.ok]
    arrays = np.stack(good) if good else np.zeros((0, *size, 3), dtype=np.uint8)
    return Batch(
        paths=[d.path for d in chunk],
        arrays=arrays,
        ok=np.array([d.ok for d in chunk], dtype=bool),
        errors={d.path: d.error for d in chunk if not d.ok},
    )
