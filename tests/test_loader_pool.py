"""iter_decoded in a caller's pool (issue 19: a run of many chunks started a pool of
decode threads per chunk): order kept, the pool left open, nothing decoded for nobody."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from anigenre.core.loader import Decoded, iter_decoded


def _decode(path) -> Decoded:
    time.sleep(0.001 * (int(path) % 3))  # out of order, unless the loader restores it
    return Decoded(str(path), None, "made-up: not decoded")


def test_a_callers_pool_keeps_order_and_stays_open():
    with ThreadPoolExecutor(3) as pool:
        for _ in range(2):  # two chunks, one pool
            got = [d.path for d in iter_decoded(range(20), _decode, prefetch=4, pool=pool)]
            assert got == [str(i) for i in range(20)]
        assert pool.submit(lambda: 1).result() == 1  # still open


def test_an_abandoned_stream_does_not_decode_the_rest():
    started: list[int] = []
    gate = threading.Event()

    def slow(path) -> Decoded:
        started.append(int(path))
        gate.wait(5)
        return Decoded(str(path), None, "made-up")

    with ThreadPoolExecutor(1) as pool:
        stream = iter_decoded(range(50), slow, prefetch=10, pool=pool)
        gate.set()
        next(stream)
        stream.close()
    assert len(started) < 50
