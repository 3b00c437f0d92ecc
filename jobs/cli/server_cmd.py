"""``anigenre anilist-server``: the local AniList-compatible replay server."""

from __future__ import annotations

import argparse
import time

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.cli import args as types
from anigenre.scraper.replay.build import build_server


def register(sub) -> None:
    p = sub.add_parser("anilist-server", help="serve recorded AniList pages and posters locally")
    p.add_argument("--pages", help="recorded pages (default <shared>/data/anilist/pages)")
    p.add_argument("--posters", help="labelled posters (default <shared>/data/posters)")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    p.add_argument("--rate-limit", type=types.positive_int, help="requests allowed per window")
    p.add_argument("--advertise-limit", type=types.positive_int, help="limit shown in headers")
    p.add_argument("--rate-window", type=types.positive_float, default=60.0, help="seconds")
    p.add_argument("--faults", help="fault spec, e.g. 5xx=0.1,html=0.05 (see docs)")
    p.add_argument("--seed", type=int, default=0, help="seed for fault draws")
    p.set_defaults(run=run, settings_overrides=lambda a: {})


def run(args: argparse.Namespace, settings: Settings) -> int:
    pages = args.pages or settings.shared_dir / "data" / "anilist" / "pages"
    posters = args.posters or settings.shared_dir / "data" / "posters"
    try:
        server = build_server(
            pages,
            posters,
            port=args.port,
            rate_limit=args.rate_limit,
            advertise_limit=args.advertise_limit,
            rate_window_s=args.rate_window,
            faults=args.faults,
            seed=args.seed,
        )
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(f"cannot start the replay server: {exc}") from None
    titles = len(server.catalog.ids())
    print(
        f"serving {titles} titles, {len(server.catalog.posters)} posters at {server.url}",
        flush=True,
    )
    server.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
