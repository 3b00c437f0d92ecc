"""HTTP plumbing shared by the GraphQL client and the poster downloader.

Turns ``requests`` outcomes into the project's error hierarchy and runs the retry
loop, so both callers treat a 5xx, a reset or a 429 the same way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import requests
from anigenre.core.backoff import compute_backoff
from anigenre.core.errors import (
    ApiDisabled,
    HTTPStatusError,
    NetworkError,
    NotFound,
    RateLimited,
    RetryableError,
    ServerError,
)

T = TypeVar("T")

USER_AGENT = "anigenre/0.1 (+https://github.com/anigenre)"


@dataclass(frozen=True)
class Timeout:
    connect: float = 5.0
    read: float = 30.0

    def as_requests(self) -> tuple[float, float]:
        return (self.connect, self.read)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base: float = 0.5
    cap: float = 30.0
    # 429s are the server telling us when to come back, not a fault, so they get a
    # separate and larger allowance than other failures.
    max_rate_limited: int = 50


@dataclass(frozen=True)
class Retry:
    """A wait before the next attempt, for whoever shows progress: a scrape against an
    unreachable endpoint is otherwise silent for the whole backoff."""

    reason: str
    attempt: int  # 1-based: the retry about to be made
    of: int  # the allowance it counts against
    delay_s: float


@dataclass
class Stats:
    """Counters for the end-of-run summary; safe to bump from several threads.
    ``on_retry`` hears each wait before it starts."""

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    on_retry: Callable[[Retry], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retrying(self, retry: Retry) -> None:
        if self.on_retry is not None:
            self.on_retry(retry)

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def raise_for_status(resp: requests.Response) -> None:
    """Map a non-2xx response onto the error hierarchy."""
    status = resp.status_code
    if status < 400:
        return
    if status == 429:
        raise RateLimited("429 Too Many Requests", retry_after_seconds(resp.headers))
    if status == 403:
        raise ApiDisabled(f"403 from {resp.url}: the API refused us (disabled or blocked)")
    if status == 404:
        raise NotFound(f"404 {resp.url}")
    if status >= 500:
        raise ServerError(f"{status} from {resp.url}", status)
    raise HTTPStatusError(f"{status} from {resp.url}", status)


def retry_after_seconds(headers, now: Callable[[], float] = time.time) -> float:
    """Seconds to wait after a 429: Retry-After, else X-RateLimit-Reset (epoch), else 60."""
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return max(float(reset) - now(), 0.0)
        except ValueError:
            pass
    return 60.0


def send(call: Callable[[], requests.Response], url: str) -> requests.Response:
    """Run one HTTP call, turning transport failures into a NetworkError naming ``url``."""
    try:
        return call()
    except requests.Timeout:
        raise NetworkError(f"{url} did not answer in time") from None
    except requests.exceptions.ChunkedEncodingError:
        raise NetworkError(f"{url} cut the response off mid-transfer") from None
    except requests.ConnectionError as exc:
        raise NetworkError(f"cannot reach {url} ({_root_cause(exc)})") from None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or (exc.args and isinstance(exc.args[0], BaseException)):
        exc = exc.__cause__ or exc.args[0]
    text = str(exc)
    return text.split("] ", 1)[-1] if "] " in text else text or type(exc).__name__


def with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    stats: Stats,
    *,
    on_rate_limited: Callable[[float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``attempt`` until it returns or raises something not retryable.

    A 429 waits for the server's Retry-After (through ``on_rate_limited``, so a
    shared limiter can hold back every caller) and does not use up the retry budget
    for faults; other retryable errors back off exponentially with jitter.
    """
    failures = 0
    limited = 0
    while True:
        try:
            return attempt()
        except RateLimited as exc:
            stats.bump("rate_limited")
            limited += 1
            if limited > policy.max_rate_limited:
                raise
            stats.retrying(Retry(str(exc), limited, policy.max_rate_limited, exc.retry_after))
            if on_rate_limited is not None:
                on_rate_limited(exc.retry_after)
            else:
                sleep(exc.retry_after)
        except RetryableError as exc:
            if failures >= policy.max_retries:
                raise
            delay = compute_backoff(failures, base=policy.base, cap=policy.cap, rng=rng)
            stats.retrying(Retry(str(exc), failures + 1, policy.max_retries, delay))
            sleep(delay)
            failures += 1
            stats.bump("retries")
