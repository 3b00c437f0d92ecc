"""``anigenre scrape``: AniList metadata and posters into the raw Parquet layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anigenre.config import Settings
from anigenre.core.progress import Progress
from anigenre.jobs.cli import args as types
from anigenre.scraper.request import ScrapeRequest

if TYPE_CHECKING:  # requests and BeautifulSoup come with them: only a scrape needs them
    from anigenre.scraper.http import Retry
    from anigenre.scraper.run import ScrapeSummary
    from anigenre.scraper.store import RawStore


def add_scrape_arguments(p) -> None:
    """The flags of a scrape request, shared by ``scrape`` and ``jobs submit scrape``."""
    p.add_argument("--years", type=types.year_range, required=True, help="e.g. 2013-2021")
    p.add_argument("--formats", type=types.formats, help="e.g. TV,MOVIE (default: all)")
    p.add_argument("--no-posters", action="store_true", help="metadata only")
    p.add_argument("--incremental", action="store_true", help="only titles updated since last run")
    p.add_argument("--adult", action="store_true", help="include adult titles")


def scrape_request(args, settings: Settings) -> ScrapeRequest:
    return ScrapeRequest(
        years=args.years,
        formats=args.formats,
        include_adult=args.adult,
        posters=not args.no_posters,
        incremental=args.incremental,
        overlap_s=settings.incremental_overlap_s,
    )


def register(sub) -> None:
    p = sub.add_parser("scrape", help="scrape AniList titles and posters into <data>/raw/")
    add_scrape_arguments(p)
    p.add_argument("--endpoint", help="GraphQL endpoint (env ANIGENRE_ANILIST_URL)")
    p.add_argument("--rate-limit", type=types.positive_float, help="requests per minute ceiling")
    p.add_argument("--concurrency", type=types.positive_int, help="parallel poster downloads")
    p.set_defaults(run=run, settings_overrides=overrides)


def overrides(args) -> dict:
    return {
        "anilist_url": args.endpoint,
        "rate_limit_per_min": args.rate_limit,
        "poster_concurrency": args.concurrency,
    }


def run(args, settings: Settings) -> int:
    from anigenre.scraper.store import RawStore

    request = scrape_request(args, settings)
    summary = scrape_with_progress(settings, request, quiet=args.quiet)
    print(format_summary(summary, RawStore(settings.data_dir), request))
    return 0


def scrape_with_progress(
    settings: Settings, request: ScrapeRequest, *, quiet: bool = False
) -> ScrapeSummary:
    from anigenre.jobs.stages.scrape import scrape

    bar = Progress("scrape", unit="page", every_s=settings.progress_every_s, quiet=quiet)

    def on_page(year: int, page: int, titles: int) -> None:
        bar.set_postfix(year=year, page=page, titles=titles)
        bar.update(1)

    def on_retry(r: Retry) -> None:
        bar.note(retry_line(r))

    try:
        return scrape(settings, request, on_page, on_retry)
    finally:
        bar.close()


def retry_line(r: Retry) -> str:
    """'cannot reach URL (Connection refused); retry 1/6 in 0.4 s'."""
    return f"{r.reason}; retry {r.attempt}/{r.of} in {r.delay_s:.1f} s"


def format_summary(s: ScrapeSummary, store: RawStore, request: ScrapeRequest) -> str:
    posters = " · ".join(
        f"{k} {s.posters.get(k, 0)}" for k in ("ok", "missing", "invalid", "error")
    )
    mode = "incremental" if request.incremental else "full"
    lines = [
        f"scrape ({mode}, {request.years[0]}-{request.years[1]}) finished in {s.elapsed_s:.1f} s"
        + (" · resumed from checkpoint" if s.resumed else ""),
        f"  titles     {s.titles} written from {s.pages} pages",
    ]
    if request.posters:
        lines.append(f"  posters    {posters} ({s.posters_cached} already present)")
    lines += [
        f"  requests   {s.requests} GraphQL · 429s seen {s.rate_limited}"
        + (f" (+{s.posters_rate_limited} on posters)" if request.posters else "")
        + f" · retries {s.retries}",
        f"  tables     {store.media_path} ({store.media().num_rows} titles), "
        f"{store.posters_path} ({store.posters().num_rows} posters)",
    ]
    if s.cutoff:
        lines.insert(2, f"  cutoff     titles updated after {s.cutoff.isoformat()}")
    return "\n".join(lines)
