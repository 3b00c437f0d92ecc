"""A thread pool that a forked child can use.

A Celery prefork worker forks after the parent may already have made its pools: the child
inherits each executor object but none of its threads, so work submitted there would wait
forever. ``PerProcessPool`` makes its executor on first use in each process.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


class PerProcessPool:
    def __init__(self, workers: int, name: str) -> None:
        self.workers, self.name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    @property
    def made(self) -> bool:
        """Whether this process has made its executor yet."""
        return self._pool is not None and self._pid == os.getpid()

    def get(self) -> ThreadPoolExecutor:
        if not self.made:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
            self._pid = os.getpid()
        return self._pool
