"""The planning lock of an output dir in object storage, held in the broker's Redis.

A bucket has no locks and is shared by machines that share nothing else but the broker,
so the broker's Redis is where planners of one ``s3://`` output dir take turns
(jobs.runs.live.planning). The lock expires: a planner killed while holding it blocks
the others for ``timeout_s`` at most, and planning never takes near that long (the
hashing happens before the lock is taken).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

import redis
from anigenre.core.errors import NetworkError

PREFIX = "anigenre:planning:"
TIMEOUT_S = 300.0
WAIT_S = 600.0


def planning_lock(
    broker_url: str, out_uri: str, timeout_s: float = TIMEOUT_S
) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the Redis lock for planning into ``out_uri``."""
    key = PREFIX + hashlib.sha256(out_uri.encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        client = redis.Redis.from_url(broker_url)
        lock = client.lock(key, timeout=timeout_s, blocking_timeout=WAIT_S)
        try:
            if not lock.acquire():
                raise NetworkError(f"another planner held the planning lock of {out_uri} too long")
        except redis.RedisError as exc:
            raise NetworkError(f"cannot take the planning lock of {out_uri}: {exc}") from exc
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError):  # expired: the next planner has it
                lock.release()
            client.close()

    return held
