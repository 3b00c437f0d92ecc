"""The scrape stage: a ScrapeRequest run against the configured AniList endpoint."""

from __future__ import annotations

from collections.abc import Callable

from anigenre.config import Settings
from anigenre.scraper.http import Retry
from anigenre.scraper.run import PageCallback, ScrapeRequest, ScrapeSummary
from anigenre.scraper.wiring import build_scraper


def scrape(
    settings: Settings,
    request: ScrapeRequest,
    on_page: PageCallback | None = None,
    on_retry: Callable[[Retry], None] | None = None,
) -> ScrapeSummary:
    return build_scraper(settings, on_page, on_retry).run(request)
