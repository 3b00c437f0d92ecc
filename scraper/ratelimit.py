"""Client-side pacing: a token bucket under a ceiling that the server's headers can lower."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Aim a little under the allowed rate: the server counts in its own window, and
# clocks and network jitter can push two of our requests into one of its slots.
SAFETY = 0.97
# Float refills land a hair under a whole token; without slack we would spin on tiny sleeps.
_EPS = 1e-9


class RateLimiter:
    """Token bucket refilled at the effective rate.

    Its capacity (``burst``) lets a request that waited on slow local work catch up
    instead of losing its slot for good. By default it is half the headroom that
    SAFETY leaves, so even a full burst plus a minute of steady pacing stays under
    the server's per-minute limit; at low limits that is 1, i.e. strict pacing.

    The effective rate is the configured ceiling, lowered (never raised) by what the
    server advertises in ``X-RateLimit-Limit``. When ``X-RateLimit-Remaining`` reaches
    zero, or after a 429, everything waits until the server's reset time.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ceiling = per_minute
        self.advertised: float | None = None
        self._fixed_burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._last = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @property
    def per_minute(self) -> float:
        limit = self.ceiling if self.advertised is None else min(self.ceiling, self.advertised)
        return limit * SAFETY

    @property
    def burst(self) -> int:
        if self._fixed_burst is not None:
            return self._fixed_burst
        limit = self.per_minute / SAFETY
        return max(int(limit * (1 - SAFETY) / 2), 1)

    def acquire(self) -> None:
        """Block until one request may be sent."""
        with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                wait = max(self._paused_until - now, 0.0)
                if wait == 0.0 and self._tokens >= 1.0 - _EPS:
                    self._tokens = max(self._tokens - 1.0, 0.0)
                    return
                if wait == 0.0:
                    wait = (1.0 - self._tokens) * 60.0 / self.per_minute
                self._sleep(wait)

    def observe(self, limit: int | None, remaining: int | None, reset_in: float | None) -> None:
        """Adapt to the server's rate-limit headers from the latest response."""
        with self._lock:
            if limit:
                self.advertised = float(limit)
            if remaining is not None and remaining <= 0 and reset_in:
                self._pause(reset_in)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._pause(seconds)

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._tokens = 0.0

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._last, 0.0)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_minute / 60.0)
