"""Server-side rate limiting that answers like AniList: headers, 429 body, Retry-After."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

TOO_MANY = {"data": None, "errors": [{"message": "Too Many Requests.", "status": 429}]}


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str]


class WindowLimiter:
    """At most ``limit`` requests in any ``window_s`` sliding window.

    Headers speak per minute, as AniList's do, whatever the window: a 20-per-2-s limit
    advertises 600. ``advertise`` overrides that figure; AniList has advertised 90 while
    enforcing 30, and a client must survive that, so the two can differ.
    """

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        advertise: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.advertise = advertise or round(limit * 60 / window_s)
        self.clock = clock
        self.rejected = 0
        self.early_retries = 0  # requests sent before a 429's Retry-After ran out
        self._times: collections.deque[float] = collections.deque()
        self._penalty_until = 0.0
        self._lock = threading.Lock()

    def check(self) -> Decision:
        with self._lock:
            now = self.clock()
            while self._times and self._times[0] <= now - self.window_s:
                self._times.popleft()
            if now < self._penalty_until:
                self.early_retries += 1
            if len(self._times) >= self.limit:
                wait = max(math.ceil(self._times[0] + self.window_s - now), 1)
                self._penalty_until = max(self._penalty_until, now + wait)
                self.rejected += 1
                return Decision(
                    False,
                    {
                        "Retry-After": str(wait),
                        "X-RateLimit-Limit": str(self.advertise),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(int(now + wait)),
                    },
                )
            self._times.append(now)
            remaining = max(self.advertise - len(self._times), 0)
            return Decision(
                True,
                {"X-RateLimit-Limit": str(self.advertise), "X-RateLimit-Remaining": str(remaining)},
            )
