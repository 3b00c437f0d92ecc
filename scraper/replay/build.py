"""Assemble a ReplayServer from plain options (used by the CLI, the demo and tests)."""

from __future__ import annotations

from pathlib import Path

from anigenre.scraper.replay.catalog import Catalog
from anigenre.scraper.replay.faults import FaultPlan
from anigenre.scraper.replay.limits import WindowLimiter
from anigenre.scraper.replay.server import ReplayServer


def build_server(
    pages: Path,
    posters: Path | None,
    *,
    port: int = 0,
    rate_limit: int | None = None,
    advertise_limit: int | None = None,
    rate_window_s: float = 60.0,
    faults: str | None = None,
    seed: int = 0,
    catalog: Catalog | None = None,
) -> ReplayServer:
    limiter = (
        WindowLimiter(rate_limit, window_s=rate_window_s, advertise=advertise_limit)
        if rate_limit
        else None
    )
    return ReplayServer(
        catalog or Catalog.load(pages, posters),
        port=port,
        limiter=limiter,
        faults=FaultPlan.parse(faults, seed),
    )
