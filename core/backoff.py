"""Retry delays, as pure functions so they can be tested without sleeping."""

from __future__ import annotations

import random


def compute_backoff(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Capped exponential backoff with full jitter (AWS architecture blog's variant).

    ``attempt`` counts from 0 for the first retry. Full jitter spreads retries of many
    clients evenly instead of making them arrive together.
    """
    ceiling = min(cap, base * (2**attempt))
    return (rng or random).uniform(0.0, ceiling)
