"""A pool made before a fork works in the forked child (a Celery prefork worker)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import TimeoutError as FutureTimeout

from anigenre.core.pools import PerProcessPool


def _answer(get_pool, queue) -> None:
    try:
        queue.put(get_pool().submit(lambda: 42).result(timeout=5))
    except FutureTimeout:
        queue.put("hung")


def _in_forked_child(get_pool):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_answer, args=(get_pool, queue))
    child.start()
    child.join(20)
    return queue.get(timeout=5)


def test_a_forked_child_gets_threads_of_its_own():
    pool = PerProcessPool(2, "test")
    assert not pool.made
    parent_executor = pool.get()
    assert parent_executor.submit(lambda: 1).result(timeout=5) == 1 and pool.made
    assert pool.get() is parent_executor  # kept across calls in one process
    assert _in_forked_child(pool.get) == 42


def test_the_parents_executor_would_hang_in_the_child():
    """Why the pool exists: the inherited executor runs nothing in the child."""
    pool = PerProcessPool(1, "test")
    executor = pool.get()
    executor.submit(lambda: 1).result(timeout=5)  # its one thread now exists
    assert _in_forked_child(lambda: executor) == "hung"
