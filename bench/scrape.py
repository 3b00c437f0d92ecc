"""Scrape benchmark: how close the client runs to the allowed rate, and poster parallelism.

Run: ``make bench-scrape`` (or ``.venv/bin/python bench/scrape.py [--shared ../shared]``).
Both figures are ratios measured side by side in one run, against a local replay server
with added latency, so they do not depend on the machine's absolute speed. The server runs
in its own process, as the real AniList would, so it does not share our interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from anigenre.config import load_settings
from anigenre.scraper.posters import PosterDownloader, PosterJob
from anigenre.scraper.replay.catalog import Catalog
from anigenre.scraper.run import ScrapeRequest
from anigenre.scraper.wiring import build_scraper


@contextlib.contextmanager
def server_process(shared: Path, *args: str):
    """Start ``anigenre anilist-server`` on a free port; yield its URL."""
    cmd = [sys.executable, "-m", "anigenre.jobs.cli", "--data-dir", "/nonexistent"]
    cmd += ["anilist-server", "--port", "0", "--pages", str(shared / "data/anilist/pages")]
    cmd += ["--posters", str(shared / "data/posters"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait()


def request_rate(shared: Path, allowed_per_min: int, latency_s: float, years) -> dict:
    limits = ["--rate-limit", str(allowed_per_min), "--faults", f"slow=1:{latency_s}"]
    with server_process(shared, *limits) as url:
        times: list[float] = []
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings(
                overrides={
                    "data_dir": data,
                    "anilist_url": url,
                    "rate_limit_per_min": allowed_per_min,
                },
                env={},
            )
            scraper = build_scraper(settings, on_page=lambda *_: times.append(time.monotonic()))
            start = time.monotonic()
            scraper.run(ScrapeRequest(years=years, posters=False))
        n = scraper.client.stats.requests
        per_min = n / (times[-1] - start) * 60
        stats = requests.get(f"{url}/_admin/stats", timeout=5).json()
        return {
            "requests": n,
            "per_min": per_min,
            "ratio": per_min / allowed_per_min,
            "429s": stats["rate_limited"],
        }


def poster_throughput(shared: Path, catalog: Catalog, threads: int, latency_s: float) -> float:
    with server_process(shared, "--faults", f"slow=1:{latency_s}") as url:
        jobs = [
            PosterJob(i, (f"{url}/covers/extraLarge/{i}{p.suffix}",))
            for i, p in sorted(catalog.posters.items())
        ]
        with tempfile.TemporaryDirectory() as data:
            downloader = PosterDownloader(Path(data), max_pixels=40_000_000, concurrency=threads)
            start = time.monotonic()
            rows = list(downloader.fetch_all(jobs))
            elapsed = time.monotonic() - start
        assert all(r["status"] == "ok" for r in rows), "bench posters must all download"
        return len(jobs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared", type=Path)
    parser.add_argument("--rate", type=int, default=600, help="server's allowed requests/min")
    parser.add_argument("--latency", type=float, default=0.05, help="added per response, s")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    data = args.shared / "data"
    catalog = Catalog.load(data / "anilist" / "pages", data / "posters")

    r = request_rate(args.shared, args.rate, args.latency, (2013, 2021))
    print(
        f"request rate: {r['requests']} requests at {r['per_min']:.1f}/min against "
        f"{args.rate}/min allowed -> ratio {r['ratio']:.3f} (target >= 0.95), 429s: {r['429s']}"
    )
    one = poster_throughput(args.shared, catalog, 1, args.latency)
    many = poster_throughput(args.shared, catalog, args.threads, args.latency)
    print(
        f"posters: {len(catalog.posters)} with {args.latency * 1000:.0f} ms latency: "
        f"1 thread {one:.1f}/s, {args.threads} threads {many:.1f}/s -> {many / one:.2f}x"
    )


if __name__ == "__main__":
    main()
