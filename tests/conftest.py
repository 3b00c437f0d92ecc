"""Shared fixtures: the read-only ../shared data, replay servers on loopback, settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from anigenre.config import Settings, load_settings
from anigenre.scraper.replay.build import build_server
from anigenre.scraper.replay.catalog import Catalog

ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path:
    configured = os.environ.get("ANIGENRE_SHARED_DIR")
    return Path(configured) if configured else (ROOT.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared_dir()
    if not (path / "data" / "anilist" / "pages").is_dir():
        # Fail, not skip: CI always has ../shared, and a skip would hide a broken setup.
        pytest.fail(f"shared data not found at {path}; set ANIGENRE_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def pages_dir(shared_dir) -> Path:
    return shared_dir / "data" / "anilist" / "pages"


@pytest.fixture(scope="session")
def posters_dir(shared_dir) -> Path:
    return shared_dir / "data" / "posters"


@pytest.fixture(scope="session")
def recorded(pages_dir, posters_dir) -> Catalog:
    """The recorded catalogue, loaded once; never mutated (servers get their own copy)."""
    return Catalog.load(pages_dir, posters_dir)


@pytest.fixture
def replay(pages_dir, posters_dir):
    """Factory for replay servers on a free loopback port; all stopped at teardown."""
    servers = []

    def start(**options):
        server = build_server(pages_dir, posters_dir, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_settings(tmp_path, shared_dir):
    """Settings for a scrape into a temp data dir, fast enough for tests."""

    def make(url: str, **overrides) -> Settings:
        values = {
            "data_dir": tmp_path / "data",
            "shared_dir": shared_dir,
            "anilist_url": url,
            "rate_limit_per_min": 6000,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.05,
            "connect_timeout_s": 2,
            "read_timeout_s": 5,
        }
        values.update(overrides)
        return load_settings(overrides=values, env={})

    return make


@pytest.fixture(scope="session")
def s3():
    """moto's standalone S3 server on a free loopback port, one per test session."""
    from tests.s3 import s3_server

    with s3_server() as server:
        yield server
