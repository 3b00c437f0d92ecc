"""``anigenre demo``: the main job end to end on the embedded default (no broker, no network)."""

from __future__ import annotations

from config import Settings
from jobs.cli.scrape_cmd import format_summary, scrape_with_progress
from scraper.replay.build import build_server
from scraper.run import ScrapeRequest
from scraper.store import RawStore

DEMO_YEARS = (2013, 2021)  # the paper's period


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline against the local replay server")
    p.add_argument("--rate-limit", type=int, default=300, help="replay server's limit per minute")
    p.set_defaults(run=run, settings_overrides=lambda a: {})


def run(args, settings: Settings) -> int:
    shared = settings.shared_dir / "data"
    server = build_server(
        shared / "anilist" / "pages", shared / "posters", rate_limit=args.rate_limit
    ).start()
    try:
        print(
            f"[1/1] scrape {DEMO_YEARS[0]}-{DEMO_YEARS[1]} from the replay server at {server.url}"
        )
        demo = settings.model_copy(
            update={"anilist_url": server.url, "rate_limit_per_min": float(args.rate_limit)}
        )
        request = ScrapeRequest(years=DEMO_YEARS, overlap_s=settings.incremental_overlap_s)
        summary = scrape_with_progress(demo, request)
        print(format_summary(summary, RawStore(settings.data_dir), request))
        stats = server.stats()
        print(f"  server     {stats['rate_limited']} rate-limit violations · {stats['requests']}")
    finally:
        server.stop()
    return 0
