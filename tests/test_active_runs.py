"""Bookkeeping that does not grow with history: the workers' sweep reads only the runs
marked active, and the runs list reads only the page it shows (issue 21)."""

from __future__ import annotations

import contextlib
import json

import pytest
from anigenre.config import load_settings
from anigenre.jobs.queue import sweeper as sweeping
from anigenre.jobs.queue.app import create_app
from anigenre.jobs.queue.publish import send_chunks
from anigenre.jobs.queue.sweeper import LOCK_KEY, Sweeper, watched_runs
from anigenre.jobs.runs.index import (
    ACTIVE_SCAN,
    RUNS_INDEX,
    active_runs,
    mark_finished,
    read_active_scan,
    record_run,
)
from anigenre.jobs.runs.layout import PLAN
from anigenre.jobs.runs.markers import clear_failure, mark_failed, mark_queued
from anigenre.jobs.runs.plan import plan_run
from anigenre.jobs.service import runs

from tests.procs import own_redis, run_cli
from tests.run_records import local_put, seed_finished_runs, store_operations
from tests.s3_counting import CountingS3
from tests.synthetic import poster_folder


@pytest.fixture
def broker(tmp_path):
    with own_redis(tmp_path / "redis") as db:
        yield db


def queued_run(tmp_path, url, name="in"):
    """A run planned now (newer than every seeded one), recorded and published."""
    data = tmp_path / "data"
    folder = poster_folder(tmp_path / name, 2, 4000 + len(name))
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=1)
    record_run(data, plan)
    app = create_app(load_settings(overrides={"data_dir": data, "broker_url": url}, env={}))
    send_chunks(app, plan)
    return data, plan, app


def sweeper_of(client, data, app) -> Sweeper:
    requeue = lambda p, c: send_chunks(app, p, c)  # noqa: E731
    return Sweeper(client, data, requeue, interval_s=1, max_resends=3, heartbeat_s=60)


def sweep(client, sweeper):
    client.delete(LOCK_KEY)  # the previous sweep's lock, without waiting it out
    return sweeper.sweep()


def test_the_sweep_costs_the_same_with_10_or_200_finished_runs(tmp_path, broker):
    url, client = broker
    data, plan, app = queued_run(tmp_path, url)
    sweeper = sweeper_of(client, data, app)
    sweep(client, sweeper)  # the first sweep of the index: nothing recorded before markers
    steady, dropping = [], []
    for n in (10, 190):  # 10, then 200 finished runs in all
        seed_finished_runs(local_put(tmp_path), n, str(tmp_path / "out"), marked=True)
        assert len(active_runs(data)) == 1 + n
        with store_operations() as ops:
            sweep(client, sweeper)  # finds them finished and drops their markers
        dropping.append(sum(ops.values()))
        assert active_runs(data) == [plan.run_id]
        with store_operations() as ops:
            assert sweep(client, sweeper).requeued == {}
        steady.append(dict(ops))
    assert steady[0] == steady[1], "a finished run costs the sweep nothing"
    assert steady[0]["list_files"] <= 3  # the markers, the run's parts, no index listing
    # Dropping a marker is a few operations per run, once.
    assert dropping[1] - dropping[0] <= 12 * 180


def test_the_sweep_does_not_read_the_index(tmp_path, broker):
    """An index of finished runs with no markers (the steady state): not one of them is
    read by a sweep, and the old path, which looked at every one, is gone."""
    url, client = broker
    seed_finished_runs(local_put(tmp_path), 50, str(tmp_path / "out"))
    data, plan, app = queued_run(tmp_path, url)
    sweeper = sweeper_of(client, data, app)
    sweep(client, sweeper)
    seen = []
    real = sweeping.indexed_run_files
    sweeping.indexed_run_files = lambda d, r, s3=None: seen.append(r) or real(d, r, s3)
    try:
        sweep(client, sweeper)
    finally:
        sweeping.indexed_run_files = real
    assert seen == [plan.run_id]


def test_runs_recorded_before_the_markers_are_scanned_once_in_batches(
    tmp_path, broker, monkeypatch
):
    url, client = broker
    monkeypatch.setattr(sweeping, "SCAN_BATCH", 4)
    seed_finished_runs(local_put(tmp_path), 6, str(tmp_path / "out"))
    data, plan, app = queued_run(tmp_path, url)
    # As an index written before the upgrade: no markers, no scan record.
    mark_finished(data, plan.run_id)
    (data / RUNS_INDEX / ACTIVE_SCAN).unlink(missing_ok=True)
    sweeper = sweeper_of(client, data, app)
    sweep(client, sweeper)  # the newest 4 (the live run first), then 3 left
    assert active_runs(data) == [plan.run_id], "the unfinished run is watched at once"
    scan = read_active_scan(data)
    assert scan["done"] is False and scan["below"] < plan.run_id
    sweep(client, sweeper)
    assert read_active_scan(data)["done"] is True and sweeper.migrated
    with store_operations() as ops:
        sweep(client, sweeper)
        fresh = sweeper_of(client, data, app)  # another worker: reads the record once
        sweep(client, fresh)
    assert fresh.migrated and ops["read_bytes"] >= 1
    assert active_runs(data) == [plan.run_id]


def test_a_failed_run_leaves_the_sweep_and_comes_back_when_resumed(tmp_path, broker):
    url, client = broker
    data, plan, app = queued_run(tmp_path, url)
    sweeper = sweeper_of(client, data, app)
    mark_failed(plan, [1], 3)
    sweep(client, sweeper)
    assert active_runs(data) == []
    clear_failure(plan)  # what jobs resume does, then it publishes the missing chunks
    send_chunks(app, plan, [1])
    assert active_runs(data) == [plan.run_id]
    assert [p.run_id for p in watched_runs(data)] == [plan.run_id]


def test_a_publish_racing_the_drop_of_its_marker_keeps_the_run_watched(
    tmp_path, broker, monkeypatch
):
    """The sweep finds a run not queued yet and drops its marker, while its planner
    publishes it and marks it again: the look after the drop puts the marker back."""
    url, client = broker
    data = tmp_path / "data"
    folder = poster_folder(tmp_path / "in", 2, 4100)
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=1)
    record_run(data, plan)  # marked, not queued: a jobs submit between plan and publish
    app = create_app(load_settings(overrides={"data_dir": data, "broker_url": url}, env={}))
    real = sweeping.mark_finished

    def published_meanwhile(d, run_id, s3=None):
        send_chunks(app, plan)  # queued and marked just before the drop lands
        real(d, run_id, s3)

    monkeypatch.setattr(sweeping, "mark_finished", published_meanwhile)
    assert [p.run_id for p in watched_runs(data)] == [plan.run_id]
    assert active_runs(data) == [plan.run_id]


def test_jobs_list_shows_the_newest_runs_and_says_how_many_more(tmp_path):
    ids = seed_finished_runs(local_put(tmp_path), 25, str(tmp_path / "out"))
    data = tmp_path / "data"
    settings = load_settings(overrides={"data_dir": data}, env={})
    with store_operations() as ops:
        page = runs.runs_page(settings, 5, offset=5)
    assert [e.run_id for e in page.entries] == ids[::-1][5:10]
    assert (page.total, page.more) == (25, 15)
    assert ops["list_files"] <= 1 + 5 and ops["read_bytes"] <= 3 * 5, "the page's runs only"

    env = {"ANIGENRE_DATA_DIR": str(data)}
    listed = run_cli("jobs", "list", env=env, timeout=60).stdout.splitlines()
    shown = [line.split()[1].rstrip(":") for line in listed if line.startswith("run ")]
    assert shown == ids[::-1][:20]
    assert listed[20] == (
        f"... 5 older run(s) not shown; 'anigenre --data-dir {data} jobs list --limit 25' "
        "or --all lists them"
    )
    few = json.loads(run_cli("jobs", "list", "--limit", "3", "--json", env=env).stdout)
    assert [r["run_id"] for r in few["runs"]] == ids[::-1][:3]
    assert (few["runs_total"], few["runs_more"]) == (25, 22)
    every = run_cli("jobs", "list", "--all", env=env, timeout=60).stdout
    assert every.count("\nrun ") + every.startswith("run ") == 25 and "older" not in every


@pytest.fixture(scope="module")
def counted_s3():
    server = CountingS3().start()
    try:
        yield server
    finally:
        server.stop()


def test_on_s3_the_sweeps_requests_do_not_grow_and_the_list_pages_past_1000(
    tmp_path, broker, counted_s3
):
    url, client = broker
    bucket = counted_s3.new_bucket()
    data, out, s3 = f"s3://{bucket}/data", f"s3://{bucket}/out", counted_s3.options
    folder = poster_folder(tmp_path / "in", 2, 4200)
    plan = plan_run([folder], model_id="m", out_dir=out, chunk_size=1, s3=s3,
                    lock=contextlib.nullcontext)  # fmt: skip
    record_run(data, plan, s3)
    mark_queued(plan)
    client.rpush("predict", "backlog")  # the lost-chunk check waits: sweeps stay alike
    sweeper = Sweeper(client, data, lambda p, c: None, interval_s=1, max_resends=3,
                      heartbeat_s=60, s3=s3)  # fmt: skip
    requests = []
    for n in (5, 1000):  # 5, then 1,005 finished runs: past one page of a listing
        seed_finished_runs(counted_s3.put_into(bucket), n, out)
        sweep(client, sweeper)
        counted_s3.reset()
        sweep(client, sweeper)
        requests.append(counted_s3.total)
    assert requests[0] == requests[1], requests

    settings = load_settings(overrides={"data_dir": data}, env=counted_s3.env)
    counted_s3.reset()
    page = runs.runs_page(settings, 3)
    assert page.total == 1006 and page.entries[0].run_id == plan.run_id
    assert counted_s3.total < 60, "the listing's two pages and three runs, not 1,006"


def test_a_watched_run_whose_plan_cannot_be_read_keeps_its_marker(tmp_path, broker):
    """A bucket's error reads as a damaged plan: the run is skipped this sweep, as before,
    and looked at again the next, never dropped for good."""
    url, client = broker
    data, plan, app = queued_run(tmp_path, url)
    (plan.run_dir / PLAN).write_text("{not json")
    assert list(watched_runs(data)) == [] and active_runs(data) == [plan.run_id]
