"""Scrapes against the replay server on loopback: real HTTP, real Parquet."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from anigenre.core import schemas
from anigenre.core.errors import ApiDisabled, GraphQLError
from anigenre.scraper.query import MEDIA_PAGE_QUERY
from anigenre.scraper.run import ScrapeRequest
from anigenre.scraper.store import RawStore
from anigenre.scraper.wiring import build_scraper


def scrape(settings, **request):
    request.setdefault("overlap_s", settings.incremental_overlap_s)
    summary = build_scraper(settings).run(ScrapeRequest(**request))
    store = RawStore(settings.data_dir)
    return summary, pd.read_parquet(store.media_path), store


def labels(posters_dir) -> pd.DataFrame:
    df = pd.read_csv(posters_dir / "labels.csv")
    return df[df["anilist_id"].notna()].astype({"anilist_id": int}).set_index("anilist_id")


def test_full_scrape_yields_exactly_the_recorded_titles(replay, make_settings, recorded):
    server = replay(rate_limit=6000)
    summary, media, store = scrape(make_settings(server.url), years=(2013, 2021), posters=False)

    expected = recorded.ids((2013, 2021))
    assert len(media) == len(expected) == summary.titles
    assert set(media["anilist_id"]) == expected
    assert media["anilist_id"].is_unique
    assert server.stats()["rate_limited"] == 0
    assert summary.rate_limited == 0
    # Null scores stay null (the recording has unscored titles), and the schema is the declared one.
    assert media["average_score"].isna().any() and (media["average_score"].dropna() > 0).all()
    assert pq.read_schema(store.media_path).remove_metadata().equals(schemas.MEDIA)
    assert not store.checkpoint_path.exists()


def test_rescrape_replaces_rows_and_never_duplicates(replay, make_settings, recorded):
    server = replay()
    settings = make_settings(server.url)
    scrape(settings, years=(2020, 2021), posters=False)
    _, media, _ = scrape(settings, years=(2021, 2021), posters=False)
    assert set(media["anilist_id"]) == recorded.ids((2020, 2021))
    assert media["anilist_id"].is_unique


def test_format_filter_is_applied(replay, make_settings):
    server = replay()
    _, media, _ = scrape(
        make_settings(server.url), years=(2019, 2019), formats=("MOVIE",), posters=False
    )
    assert len(media) > 0 and set(media["format"]) == {"MOVIE"}


def test_posters_statuses_files_and_hashes(replay, make_settings, posters_dir):
    lab = labels(posters_dir)
    server = replay()
    settings = make_settings(server.url)
    summary, media, store = scrape(settings, years=(2021, 2021))
    posters = pd.read_parquet(store.posters_path).set_index("anilist_id")
    assert set(posters.index) == set(media["anilist_id"])  # one row per title, none lost

    have_file = set(lab.index) & set(media["anilist_id"])
    assert have_file, "fixture: some 2021 titles have real posters"
    ok = posters[posters["status"] == "ok"]
    assert set(ok.index) == have_file
    assert set(posters.loc[~posters.index.isin(have_file), "status"]) == {"missing"}
    for anilist_id, row in ok.iterrows():
        path = settings.data_dir / row["path"]
        assert (
            path.name
            == f"{anilist_id}.{ {'JPEG': 'jpg', 'PNG': 'png', 'WEBP': 'webp'}[row['format']] }"
        )
        data = path.read_bytes()
        # Byte-identical to the source poster, and the recorded hash is right.
        assert hashlib.sha256(data).hexdigest() == row["sha256"] == lab.loc[anilist_id, "sha256"]
        assert (row["width"], row["height"]) == (
            lab.loc[anilist_id, "width"],
            lab.loc[anilist_id, "height"],
        )
    assert summary.posters["ok"] == len(have_file)

    # A second run fetches nothing that is already present and valid.
    before = server.stats()["requests"]["covers"]
    again, _, _ = scrape(settings, years=(2021, 2021))
    assert again.posters_cached == len(have_file)
    assert server.stats()["requests"]["covers"] - before == 2 * (len(media) - len(have_file))


def test_poster_429s_pause_the_shared_limiter_and_are_counted(replay, make_settings, posters_dir):
    """A 429 from the image CDN pauses the limiter every download thread draws from (not
    one thread's sleep), every poster still lands, and the summary counts the 429s."""
    server = replay(faults="429=0.2:0.3", seed=3)
    settings = make_settings(server.url, poster_concurrency=8)
    scraper = build_scraper(settings)
    pauses = []
    limiter = scraper.downloader.limiter
    real_pause = limiter.pause
    limiter.pause = lambda seconds: (pauses.append(seconds), real_pause(seconds))
    summary = scraper.run(ScrapeRequest(years=(2021, 2021), overlap_s=0))
    store = RawStore(settings.data_dir)
    media, posters = pd.read_parquet(store.media_path), pd.read_parquet(store.posters_path)
    served = server.stats()["faults"].get("429", 0)
    assert served > 0
    assert summary.posters_rate_limited == served
    assert pauses == [0.3] * served  # the CDN's Retry-After, through the shared limiter
    have_file = set(labels(posters_dir).index) & set(media["anilist_id"])
    assert set(posters.loc[posters["status"] == "ok", "anilist_id"]) == have_file


def test_broken_posters_become_rows_with_reasons(replay, make_settings, posters_dir, recorded):
    lab = labels(posters_dir)
    ids_2021 = sorted(set(lab.index) & recorded.ids((2021, 2021)))
    html_id, cut_id, gone_id = ids_2021[:3]
    server = replay(faults=f"html@{html_id},truncate@{cut_id},404@{gone_id}")
    _, _, store = scrape(make_settings(server.url), years=(2021, 2021))
    posters = pd.read_parquet(store.posters_path).set_index("anilist_id")
    assert (
        posters.loc[html_id, "status"] == "invalid"
        and "not-an-image" in posters.loc[html_id, "error"]
    )
    assert posters.loc[cut_id, "status"] == "invalid" and "corrupt" in posters.loc[cut_id, "error"]
    assert posters.loc[gone_id, "status"] == "missing" and "404" in posters.loc[gone_id, "error"]
    assert (posters.loc[ids_2021[3:], "status"] == "ok").all()
    assert not any((store.data_dir / "raw" / "posters").glob(f"{html_id}.*"))


def test_fault_mix_is_survived_with_nothing_lost(replay, make_settings, posters_dir, recorded):
    faults = "burst=0.05:3,5xx=0.1,slow=0.05:0.2,malformed=0.1,truncate=0.15,html=0.1"
    server = replay(faults=faults, seed=7)
    summary, media, store = scrape(make_settings(server.url, max_retries=8), years=(2021, 2021))
    assert set(media["anilist_id"]) == recorded.ids((2021, 2021))
    posters = pd.read_parquet(store.posters_path).set_index("anilist_id")
    have_file = set(labels(posters_dir).index) & set(media["anilist_id"])
    assert set(posters.index[posters["status"] == "ok"]) == have_file
    injected = server.stats()["faults"]
    assert {"5xx", "malformed", "truncate", "html"} <= set(injected), injected
    assert summary.retries >= sum(injected.get(k, 0) for k in ("malformed", "truncate", "html"))


def test_429_is_honoured_when_headers_overstate_the_limit(replay, make_settings, recorded):
    # AniList has advertised 90/min while enforcing 30: the client only learns from 429s.
    server = replay(rate_limit=8, advertise_limit=6000, rate_window_s=2.0)
    summary, media, _ = scrape(
        make_settings(server.url, rate_limit_per_min=600), years=(2016, 2016), posters=False
    )
    stats = server.stats()
    assert set(media["anilist_id"]) == recorded.ids((2016, 2016))
    assert stats["rate_limited"] > 0 and summary.rate_limited == stats["rate_limited"]
    assert stats["early_retries"] == 0  # never came back before Retry-After


def test_client_paces_itself_under_an_honest_limit(replay, make_settings):
    server = replay(rate_limit=20, rate_window_s=2.0)
    summary, _, _ = scrape(
        make_settings(server.url, rate_limit_per_min=6000), years=(2016, 2017), posters=False
    )
    # The first response's headers lower the client's rate below the server's: no 429 at all
    # after the first window (the very first requests may race the headers).
    assert server.stats()["rate_limited"] <= 1
    assert summary.requests >= 20


def test_permanent_errors_are_clear_and_not_retried(replay, make_settings):
    server = replay(faults="403=1")
    with pytest.raises(ApiDisabled, match="403"):
        scrape(make_settings(server.url), years=(2020, 2020), posters=False)
    assert server.stats()["requests"]["graphql"] == 1

    server = replay()
    resp = requests.post(
        server.url, json={"query": MEDIA_PAGE_QUERY, "variables": {"sort": ["BOGUS"]}}, timeout=5
    )
    assert resp.status_code == 400
    client = build_scraper(make_settings(server.url)).client
    with pytest.raises(GraphQLError, match="BOGUS"):
        client.query(MEDIA_PAGE_QUERY, {"sort": ["BOGUS"]})


def test_incremental_picks_up_exactly_the_bumped_titles(replay, make_settings, recorded):
    server = replay()
    settings = make_settings(server.url, incremental_overlap_s=0)
    _, before, _ = scrape(settings, years=(2018, 2019), posters=False)
    bumped = sorted(recorded.ids((2018, 2018)))[:2] + sorted(recorded.ids((2019, 2019)))[-1:]
    requests.post(f"{server.url}/_admin/bump", json={"ids": bumped}, timeout=5).raise_for_status()

    summary, after, _ = scrape(settings, years=(2018, 2019), posters=False, incremental=True)
    changed = after.merge(before, on="anilist_id", suffixes=("", "_old"))
    rescraped = set(changed.loc[changed["scraped_at"] != changed["scraped_at_old"], "anilist_id"])
    assert rescraped == set(bumped)
    assert summary.titles == len(bumped)
    assert summary.pages == 2  # one page a year: the sort puts updates first
    assert len(after) == len(before)


def test_incremental_overlap_rereads_the_window_before_the_watermark(
    replay, make_settings, recorded
):
    server = replay()
    overlap = 30 * 86400
    settings = make_settings(server.url, incremental_overlap_s=overlap)
    _, before, _ = scrape(settings, years=(2018, 2018), posters=False)
    mark = before["updated_at"].max().timestamp()
    in_window = {i for i in recorded.ids((2018, 2018)) if recorded.updated_at[i] > mark - overlap}
    summary, _, _ = scrape(settings, years=(2018, 2018), posters=False, incremental=True)
    assert summary.titles == len(in_window) > 0


def test_concurrent_scrape_on_one_data_dir_is_refused(replay, make_settings):
    from anigenre.core.errors import ConfigError

    server = replay()
    store = RawStore(make_settings(server.url).data_dir)
    with store.lock(), pytest.raises(ConfigError, match="another scrape"):
        scrape(make_settings(server.url), years=(2020, 2020), posters=False)
