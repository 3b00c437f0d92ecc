import random

import pytest
from anigenre.core.backoff import compute_backoff
from anigenre.scraper.ratelimit import SAFETY, RateLimiter


def test_backoff_grows_then_caps_and_is_jittered():
    rng = random.Random(1)
    draws = [[compute_backoff(a, base=1, cap=8, rng=rng) for _ in range(200)] for a in range(6)]
    assert max(draws[0]) <= 1 and max(draws[2]) <= 4
    assert all(max(d) <= 8 for d in draws)
    assert max(draws[5]) > 6  # reaches near the cap
    assert len(set(draws[3])) > 150  # jittered, not a fixed delay


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds


def _send_times(limiter, clock, n):
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock.now)
    return times


def test_paces_under_the_ceiling():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    times = _send_times(limiter, clock, 61)
    # 61 requests at ~0.97/s take a bit over a minute: never more than 60 in 60 s.
    assert times[-1] - times[0] == pytest.approx(60 / SAFETY, rel=1e-6)
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))


def test_advertised_limit_lowers_but_never_raises_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(90, clock=clock, sleep=clock.sleep)
    limiter.observe(limit=30, remaining=29, reset_in=None)
    assert limiter.per_minute == pytest.approx(30 * SAFETY)
    limiter.observe(limit=600, remaining=599, reset_in=None)
    assert limiter.per_minute == pytest.approx(90 * SAFETY)


def test_exhausted_remaining_and_429_pause_everything():
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.observe(limit=6000, remaining=0, reset_in=7.0)
    limiter.acquire()
    assert clock.now >= 7.0
    limiter.pause(5.0)
    start = clock.now
    limiter.acquire()
    assert clock.now - start >= 5.0


@pytest.mark.parametrize("limit", [30, 90, 600, 6000])
def test_no_sixty_second_window_ever_exceeds_the_limit_even_after_stalls(limit):
    clock = FakeClock()
    limiter = RateLimiter(limit, clock=clock, sleep=clock.sleep)
    times = []
    for i in range(3 * limit):
        if i % 7 == 0:
            clock.now += 5 * 60 / limit  # slow local work between some requests
        limiter.acquire()
        times.append(clock.now)
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 60:
            j += 1
        assert i - j + 1 <= limit
