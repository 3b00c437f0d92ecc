"""Poster downloads: bounded parallelism, retries, verification, atomic id-named files."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from anigenre.core.atomic import write_bytes_atomic
from anigenre.core.errors import InvalidImage, NotFound, PermanentError, RetryableError
from anigenre.core.images import EXTENSIONS, inspect_image
from anigenre.scraper.http import RetryPolicy, Stats, Timeout, new_session, raise_for_status, send
from anigenre.scraper.http import with_retries as _with_retries
from anigenre.scraper.ratelimit import RateLimiter

POSTER_DIR = Path("raw") / "posters"
# A CDN that answers 200 with an HTML error page usually serves the image on a
# later try, so non-image content gets a couple of retries before it is "invalid".
INVALID_RETRIES = 2
_STATUS_RANK = {"missing": 0, "invalid": 1, "error": 2}
DEFAULT_POSTERS_PER_MIN = 6000.0


@dataclass(frozen=True)
class PosterJob:
    anilist_id: int
    urls: tuple[str, ...]  # best first: extraLarge, then large


class PosterDownloader:
    def __init__(
        self,
        data_dir: Path,
        *,
        max_pixels: int,
        concurrency: int = 8,
        timeout: Timeout = Timeout(),  # noqa: B008 - frozen value object
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        stats: Stats | None = None,
        limiter: RateLimiter | None = None,
        session_factory: Callable[[], requests.Session] = new_session,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.max_pixels = max_pixels
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry
        self.stats = stats or Stats()
        # Shared by every download thread: a 429 on one pauses them all until the CDN's
        # Retry-After, instead of one thread sleeping while the others keep knocking.
        self.limiter = limiter or RateLimiter(DEFAULT_POSTERS_PER_MIN)
        self._session_factory = session_factory
        self._local = threading.local()
        self._clock = clock
        # One pool for the downloader's life, so each thread keeps its keep-alive session.
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="poster")

    def fetch_all(self, jobs: Iterable[PosterJob]) -> Iterator[dict]:
        """Yield one posters-table row per job, in input order; never raises per poster."""
        yield from self._pool.map(self.fetch, jobs)

    def fetch(self, job: PosterJob) -> dict:
        if not job.urls:
            return self._row(job, None, "missing", "no cover URL")
        failures: list[tuple[str, str, str]] = []
        for url in job.urls:
            try:
                data, info = self._download_valid(url)
            except NotFound:
                failures.append(("missing", url, "HTTP 404"))
            except InvalidImage as exc:
                failures.append(("invalid", url, str(exc)))
            except (RetryableError, PermanentError) as exc:
                failures.append(("error", url, f"{type(exc).__name__}: {exc}"))
            else:
                return self._save(job, url, data, info)
        status, url, reason = max(failures, key=lambda f: _STATUS_RANK[f[0]])
        return self._row(job, url, status, reason)

    def _download_valid(self, url: str):
        for attempt in range(INVALID_RETRIES + 1):
            data = _with_retries(
                lambda: self._get(url), self.retry, self.stats, on_rate_limited=self.limiter.pause
            )
            try:
                return data, inspect_image(data, self.max_pixels)
            except InvalidImage:
                if attempt == INVALID_RETRIES:
                    raise
                self.stats.bump("retries")
        raise AssertionError("unreachable")

    def _get(self, url: str) -> bytes:
        self.limiter.acquire()
        self.stats.bump("requests")
        resp = send(lambda: self._session().get(url, timeout=self.timeout.as_requests()), url)
        raise_for_status(resp)
        return resp.content

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = self._session_factory()
        return self._local.session

    def _save(self, job: PosterJob, url: str, data: bytes, info) -> dict:
        rel = poster_path(job.anilist_id, info.format)
        for ext in EXTENSIONS.values():
            stale = self.data_dir / poster_path(job.anilist_id, ext=ext)
            if stale != self.data_dir / rel and stale.exists():
                stale.unlink()
        write_bytes_atomic(self.data_dir / rel, data)
        row = self._row(job, url, "ok", None)
        row.update(
            path=rel.as_posix(),
            sha256=hashlib.sha256(data).hexdigest(),
            width=info.width,
            height=info.height,
            format=info.format,
            bytes=len(data),
        )
        return row

    def _row(self, job: PosterJob, url: str | None, status: str, error: str | None) -> dict:
        return {
            "anilist_id": job.anilist_id,
            "source_url": url,
            "status": status,
            "error": error,
            "fetched_at": self._clock(),
        }


def poster_path(anilist_id: int, fmt: str | None = None, *, ext: str | None = None) -> Path:
    """File name from the id and the true format, never from a title."""
    return POSTER_DIR / f"{int(anilist_id)}.{ext or EXTENSIONS[fmt]}"


def is_current(row: dict | None, job: PosterJob, data_dir: Path) -> bool:
    """True when a stored poster came from one of the job's URLs and is intact on disk."""
    if not row or row.get("status") != "ok" or row.get("source_url") not in job.urls:
        return False
    path = Path(data_dir) / row["path"]
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return len(data) == row["bytes"] and hashlib.sha256(data).hexdigest() == row["sha256"]
