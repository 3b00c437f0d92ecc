"""Build a Scraper from Settings: the one place that knows how the parts fit together."""

from __future__ import annotations

from collections.abc import Callable

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.scraper.client import AniListClient
from anigenre.scraper.http import Retry, RetryPolicy, Stats, Timeout, new_session
from anigenre.scraper.posters import PosterDownloader
from anigenre.scraper.ratelimit import RateLimiter
from anigenre.scraper.run import PageCallback, Scraper
from anigenre.scraper.store import RawStore


def build_scraper(
    settings: Settings,
    on_page: PageCallback | None = None,
    on_retry: Callable[[Retry], None] | None = None,
) -> Scraper:
    """``on_retry`` hears each GraphQL request about to be retried, and how long it waits."""
    if settings.data_uri:
        # A scrape holds a file lock and checkpoints page by page: neither means anything
        # in a mirror a second machine may be pushing to, so it keeps to a local folder.
        raise ConfigError(
            f"scrape needs a local data dir, not {settings.data_uri}; scrape into a local "
            f"--data-dir, then copy it up (e.g. 'aws s3 sync DIR {settings.data_uri}')"
        )
    timeout = Timeout(settings.connect_timeout_s, settings.read_timeout_s)
    retry = RetryPolicy(settings.max_retries, settings.backoff_base_s, settings.backoff_cap_s)
    client = AniListClient(
        settings.anilist_url,
        new_session(),
        RateLimiter(settings.rate_limit_per_min),
        timeout=timeout,
        retry=retry,
        stats=Stats(on_retry=on_retry),
    )
    downloader = PosterDownloader(
        settings.data_dir,
        max_pixels=settings.max_image_pixels,
        concurrency=settings.poster_concurrency,
        limiter=RateLimiter(settings.poster_rate_limit_per_min),
        timeout=timeout,
        retry=retry,
    )
    return Scraper(client, RawStore(settings.data_dir), downloader, on_page=on_page)
