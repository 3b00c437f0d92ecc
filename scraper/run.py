"""A scrape run: pages of a year range into the raw layer, checkpointed per page."""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from anigenre.scraper.client import AniListClient
from anigenre.scraper.posters import PosterDownloader, PosterJob, is_current
from anigenre.scraper.query import FULL_SORT, INCREMENTAL_SORT, MEDIA_PAGE_QUERY, page_variables
from anigenre.scraper.records import media_row
from anigenre.scraper.request import ScrapeRequest
from anigenre.scraper.store import RawStore


@dataclass
class ScrapeSummary:
    titles: int = 0
    pages: int = 0
    posters: collections.Counter = field(default_factory=collections.Counter)
    posters_cached: int = 0
    requests: int = 0
    rate_limited: int = 0
    posters_rate_limited: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    resumed: bool = False
    cutoff: dt.datetime | None = None


PageCallback = Callable[[int, int, int], None]  # year, page, titles written so far


class Scraper:
    def __init__(
        self,
        client: AniListClient,
        store: RawStore,
        downloader: PosterDownloader | None = None,
        *,
        on_page: PageCallback | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client = client
        self.store = store
        self.downloader = downloader
        self.on_page = on_page or (lambda *_: None)
        self.clock = clock

    def run(self, req: ScrapeRequest) -> ScrapeSummary:
        started = time.monotonic()
        summary = ScrapeSummary()
        with self.store.lock():
            checkpoint = self._checkpoint_for(req, summary)
            cutoff = _parse_time(checkpoint.get("cutoff"))
            summary.cutoff = cutoff
            # Read once: each title is on one page only, so rows fetched during this run
            # never need to be looked up again.
            stored = self.store.posters_by_id() if req.posters and self.downloader else {}
            for year in range(req.years[0], req.years[1] + 1):
                self._scrape_year(req, year, checkpoint, cutoff, summary, stored)
            self.store.clear_checkpoint()
        stats = self.client.stats
        summary.requests, summary.rate_limited, summary.retries = (
            stats.requests,
            stats.rate_limited,
            stats.retries,
        )
        if self.downloader is not None:
            summary.retries += self.downloader.stats.retries
            summary.posters_rate_limited = self.downloader.stats.rate_limited
        summary.elapsed_s = time.monotonic() - started
        return summary

    def _checkpoint_for(self, req: ScrapeRequest, summary: ScrapeSummary) -> dict:
        saved = self.store.load_checkpoint()
        if saved and saved.get("key") == req.key():
            summary.resumed = True
            return saved
        cutoff = None
        if req.incremental:
            mark = self.store.watermark(req.years)
            # The cutoff is fixed when the run starts: a resumed run must not move it
            # forward past titles it has not read yet.
            cutoff = mark - dt.timedelta(seconds=req.overlap_s) if mark else None
        checkpoint = {"key": req.key(), "cutoff": _format_time(cutoff), "years": {}}
        self.store.save_checkpoint(checkpoint)
        return checkpoint

    def _scrape_year(self, req, year, checkpoint, cutoff, summary, stored: dict) -> None:
        state = checkpoint["years"].setdefault(str(year), {"next_page": 1, "done": False})
        if state["done"]:
            return
        sort = INCREMENTAL_SORT if req.incremental else FULL_SORT

        def fetch(page: int) -> dict:
            variables = page_variables(
                year, page, formats=req.formats, include_adult=req.include_adult, sort=sort
            )
            return self.client.query(MEDIA_PAGE_QUERY, variables)["Page"]

        # A full scrape asks for the next page while it stores this one, so the request
        # rate is set by the limiter, not by our parsing and Parquet writes. Incremental
        # runs usually stop after one page a year, where a prefetch would be wasted.
        prefetch = not req.incremental
        with ThreadPoolExecutor(1, thread_name_prefix="page") as pool:
            pending = pool.submit(fetch, state["next_page"])
            while not state["done"]:
                page, data = state["next_page"], pending.result()
                has_next = data["pageInfo"]["hasNextPage"]
                if prefetch and has_next:
                    pending = pool.submit(fetch, page + 1)
                reached_cutoff = self._store_page(req, data["media"], cutoff, summary, stored)
                state["next_page"] = page + 1
                state["done"] = reached_cutoff or not has_next
                self.store.save_checkpoint(checkpoint)
                summary.pages += 1
                self.on_page(year, page, summary.titles)
                if not prefetch and not state["done"]:
                    pending = pool.submit(fetch, page + 1)

    def _store_page(
        self, req, media: list[dict], cutoff, summary: ScrapeSummary, stored: dict
    ) -> bool:
        """Write one page's titles (and posters); True when it reached the incremental cutoff."""
        now = self.clock()
        rows = [media_row(m, now) for m in media]
        reached_cutoff = False
        if cutoff is not None:
            fresh = [r for r in rows if r["updated_at"] is None or r["updated_at"] > cutoff]
            reached_cutoff = len(fresh) < len(rows)
            rows = fresh
        self.store.upsert_media(rows)
        if req.posters and self.downloader is not None:
            self._fetch_posters(rows, summary, stored)
        summary.titles += len(rows)
        return reached_cutoff

    def _fetch_posters(self, rows: list[dict], summary: ScrapeSummary, stored: dict) -> None:
        jobs = []
        for row in rows:
            urls = tuple(u for u in (row["cover_url"], row["cover_url_large"]) if u)
            job = PosterJob(row["anilist_id"], urls)
            if is_current(stored.get(job.anilist_id), job, self.store.data_dir):
                summary.posters_cached += 1
                summary.posters["ok"] += 1
            else:
                jobs.append(job)
        fetched = list(self.downloader.fetch_all(jobs))
        summary.posters.update(r["status"] for r in fetched)
        self.store.upsert_posters(fetched)


def _format_time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
