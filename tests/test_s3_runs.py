"""Prediction runs over object storage: posters in an ``s3://`` bucket, the output dir in
one too, on moto's standalone S3 server (a real HTTP server on loopback). In-process and
queued on two workers whose local caches differ, one of them SIGKILLed mid-run; the rows
are read back from the bucket with pyarrow, as a user of the bucket would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from anigenre.config import load_settings
from anigenre.core.errors import ConfigError
from anigenre.jobs import stages
from anigenre.jobs.runs.index import list_runs, load_plan, record_run
from anigenre.jobs.runs.live import hold, live_inputs, release
from anigenre.jobs.runs.parts import missing_chunks
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.runs.status import run_status
from anigenre.jobs.stages.inbox import (
    Tick,
    last_tick,
    now_iso,
    overdue_reports,
    plan_inbox,
    record_tick,
    report_if_due,
    report_page,
)

from tests.procs import ROOT, Worker, own_redis, run_cli
from tests.synthetic import labelled_folder, poster_png, trained_tiny_model
from tests.test_readers import readme_block


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("s3-runs-data")
    return trained_tiny_model(data, shared_dir, epochs=1)


def s3_settings(settings, server, **values):
    """The trained model's settings, reaching the S3 server through the AWS variables."""
    return load_settings(
        overrides={"data_dir": settings.data_dir, "shared_dir": settings.shared_dir, **values},
        env=server.env,
    )


def upload_posters(bucket, n: int, seed: int, prefix: str = "posters") -> str:
    for i in range(n):
        bucket.write_bytes(f"{prefix}/p{i:03d}.png", poster_png(seed + i))
    bucket.write_bytes(f"{prefix}/notes.txt", b"not an image name: not an input")
    return bucket.uri_of(prefix)


def bucket_rows(bucket, prefix: str = "preds"):
    """The predictions folder in the bucket, read as one table with pyarrow."""
    data = ds.dataset(
        bucket.path(prefix, "predictions"), filesystem=bucket.fs, format="parquet",
        partitioning="hive",
    )  # fmt: skip
    return data.to_table().to_pandas()


def readme_s3_rows(server, out: str):
    """The README's S3 reader, with the AWS variables set, on this test's bucket."""
    snippet = readme_block("readers-s3").replace("s3://results/genres", out)
    scope: dict = {}
    saved = dict(os.environ)
    os.environ.update(server.env)
    try:
        exec(snippet, scope)  # noqa: S102 - the README, verbatim but for the bucket
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return scope["rows"].to_pandas()


def kill_after_two_chunks(plan, doomed, timeout_s: float) -> None:
    """SIGKILL ``doomed`` once two of the run's chunks are written, while others remain."""
    deadline = time.monotonic() + timeout_s
    while run_status(plan).chunks_done < 2:
        assert time.monotonic() < deadline, doomed.log.read_text()[-3000:]
        time.sleep(0.05)
    doomed.kill()
    assert not run_status(plan).complete, "finished before the kill: proves nothing"


def test_in_process_run_reads_and_writes_the_bucket_exactly_once(trained, s3, tmp_path):
    settings, model_id = trained
    settings = s3_settings(settings, s3, cache_dir=tmp_path / "cache")
    bucket = s3.new_bucket()
    posters = upload_posters(bucket, 10, 100)
    out = bucket.uri_of("preds")

    plan = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out, chunk_size=3)
    assert plan.out_dir == out and len(plan.inputs) == 10 and len(plan.chunks) == 4
    assert all(e["path"].startswith(posters + "/p") for e in plan.inputs)
    manifest = stages.predict_in_process(settings, plan)
    assert (manifest["ok"], manifest["error"]) == (10, 0)

    rows = bucket_rows(bucket)
    assert len(rows) == 10 and rows["path"].is_unique and (rows["status"] == "ok").all()
    assert set(rows["run_id"].astype(str)) == {plan.run_id}
    assert len(readme_s3_rows(s3, out)) == 10
    listed = [f.path for f in bucket.child("preds", "predictions").list_files()]
    assert listed == [f"run_id={plan.run_id}/part-0000{i}.parquet" for i in range(4)]
    assert bucket.exists("preds", "prediction-runs", plan.run_id, "_manifest.json")

    # Found again by id, from the local index; its status read from the bucket.
    again = load_plan(settings.data_dir, plan.run_id, settings.s3)
    assert run_status(again).complete and not missing_chunks(again)
    # The same posters again: nothing new, read from the bucket's rows.
    nothing = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out)
    assert not nothing.inputs and nothing.already_predicted == 10

    report = stages.report_run(settings, plan.run_id)
    assert str(report.folder) == bucket.uri_of("preds", "reports", plan.run_id)
    assert bucket.exists("preds", "reports", plan.run_id, "report.html")


def test_a_run_in_the_bucket_is_held_by_its_lease(trained, s3, tmp_path):
    """No flock reaches a bucket: a held run is known by a fresh lease, and a second
    planner leaves its files alone."""
    settings, _ = trained
    settings = s3_settings(settings, s3, cache_dir=tmp_path / "cache")
    bucket = s3.new_bucket()
    posters = upload_posters(bucket, 4, 200)
    out = bucket.uri_of("preds")
    first = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out, hold=True)
    assert bucket.exists("preds", "prediction-runs", first.run_id, "_lease.json")
    release(first.files)  # as if held by another process: only the lease in the bucket says so
    assert set(live_inputs(first.out, first.model_id)) == {e["path"] for e in first.inputs}
    second = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out)
    assert not second.inputs and second.in_live_runs == {first.run_id: 4}
    stages.predict_in_process(settings, first)  # the holder runs it
    assert hold(first.files), "released and finished: anyone may take it"


def test_an_unknown_scheme_is_one_line(trained, tmp_path):
    settings, _ = trained
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")},
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
    }
    done = run_cli("predict", "gs://bucket/posters", "--out", str(tmp_path / "o"), env=env)
    assert done.returncode == 2
    assert "unsupported storage scheme 'gs://'" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # usage line + the one error
    with pytest.raises(ConfigError, match="unsupported storage scheme 'ftp://'"):
        stages.plan_prediction(settings, [tmp_path], model_id="latest", out_dir="ftp://x/y")


def test_predict_cli_over_s3_prints_the_bucket_and_the_genres(trained, s3, tmp_path):
    settings, _ = trained
    bucket = s3.new_bucket()
    posters = upload_posters(bucket, 3, 400)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))},
        **s3.env,
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "ANIGENRE_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = run_cli("predict", posters, "--out", bucket.uri_of("preds"), env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 ok, 0 error -> " + bucket.uri_of("preds", "predictions", "run_id=") in done.stdout
    assert all(f"p00{i}.png" in done.stdout for i in range(3)), "the top-k table"
    assert len(bucket_rows(bucket)) == 3


# Short beats and sweeps: a dead worker's chunk comes back within seconds.
DRILL = {
    "ANIGENRE_WORKER_HEARTBEAT_S": "1",
    "ANIGENRE_SWEEP_INTERVAL_S": "2",
    "ANIGENRE_BROKER_RESTORE_INTERVAL_S": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def test_queued_run_on_two_workers_sharing_only_redis_and_the_bucket(trained, s3, tmp_path):
    """`jobs submit predict s3://…/posters --out s3://…/preds` on two workers with their
    own caches; one is SIGKILLed mid-run; exactly one ok row per poster in the bucket."""
    settings, _ = trained
    bucket = s3.new_bucket()
    n = 48
    posters = upload_posters(bucket, n, 300)
    out = bucket.uri_of("preds")
    with own_redis(tmp_path / "redis") as (url, _):
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))},
            **s3.env,
            **DRILL,
            "ANIGENRE_DATA_DIR": str(settings.data_dir),
            "ANIGENRE_BROKER_URL": url,
        }
        doomed = Worker("doomed", {**base, "ANIGENRE_CACHE_DIR": str(tmp_path / "c1")},
                        tmp_path / "doomed.log")  # fmt: skip
        other = Worker("other", {**base, "ANIGENRE_CACHE_DIR": str(tmp_path / "c2")},
                       tmp_path / "other.log")  # fmt: skip
        try:
            doomed.start()
            other.start()
            done = run_cli(
                "jobs", "submit", "predict", posters, "--out", out, "--chunk-size", "2",
                "--engine", "keras", env=base,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            run_id = done.stdout.split()[0]
            kill_after_two_chunks(load_plan(settings.data_dir, run_id, s3.options), doomed, 120)
            waited = run_cli("jobs", "wait", run_id, "--timeout", "200", env=base, timeout=230)
            assert waited.returncode == 0, waited.stdout + waited.stderr[-2000:]
        finally:
            doomed.kill()
            other.stop()
    rows = bucket_rows(bucket)
    assert len(rows) == n and rows["path"].is_unique and (rows["status"] == "ok").all()
    assert set(rows["run_id"].astype(str)) == {run_id}
    assert run_id in list_runs(settings.data_dir)


def test_the_run_index_can_live_in_a_bucket(s3):
    """An s3:// data dir holds the run index, so a worker on any machine finds a run."""
    bucket = s3.new_bucket()
    data = bucket.uri_of("data")
    entry = {"path": "s3://x/a.png", "size": 1, "sha256": "0" * 64}
    plan = RunPlan(
        run_id="r1",
        model_id="m",
        out_dir=bucket.uri_of("preds"),
        created="2026-01-01T00:00:00+00:00",
        top_k=4,
        chunk_size=2,
        inputs=[entry],
        chunks=[[0, 1]],
        s3=s3.options,
    )
    plan.save()
    assert list_runs(data, s3.options) == []
    record_run(data, plan, s3.options)
    assert list_runs(data, s3.options) == ["r1"]
    assert bucket.exists("data", "runs", "r1.json")
    again = load_plan(data, "r1", s3.options)
    assert again.inputs == plan.inputs and again.out_dir == plan.out_dir
    with pytest.raises(ConfigError, match="no run 'r2'"):
        load_plan(data, "r2", s3.options)


def test_two_planners_of_one_bucket_take_turns_on_the_brokers_lock(trained, s3, tmp_path):
    """Two `jobs submit predict` at once into one s3:// output dir (no flock reaches a
    bucket): the broker's Redis lock lets one plan at a time, so no poster is in both."""
    settings, _ = trained
    bucket = s3.new_bucket()
    posters = upload_posters(bucket, 12, 500)
    with own_redis(tmp_path / "redis") as (url, client):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))},
            **s3.env,
            "ANIGENRE_DATA_DIR": str(settings.data_dir),
            "ANIGENRE_BROKER_URL": url,
        }
        argv = [sys.executable, "-m", "anigenre.jobs.cli", "jobs", "submit", "predict", posters,
                "--out", bucket.uri_of("preds")]  # fmt: skip
        procs = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        assert not client.keys("anigenre:planning:*"), "released"
    run_ids = [o.split()[0] for o in outs if o.strip()]
    assert len(run_ids) == 1, "the second planner found every poster in the first's run"
    plan = load_plan(settings.data_dir, run_ids[0], s3.options)
    assert len(plan.inputs) == 12


def test_the_brokers_planning_lock_expires_when_its_holder_dies(tmp_path):
    from anigenre.jobs.queue.locks import PREFIX, planning_lock

    with own_redis(tmp_path / "redis") as (url, client):
        killed = planning_lock(url, "s3://b/out", timeout_s=1.0)()
        killed.__enter__()  # a planner killed while holding it never lets go
        assert client.keys(PREFIX + "*")
        start = time.monotonic()
        with planning_lock(url, "s3://b/out", timeout_s=1.0)():
            waited = time.monotonic() - start
        assert 0.5 < waited < 5, waited
        start = time.monotonic()
        with planning_lock(url, "s3://b/other", timeout_s=1.0)():
            assert time.monotonic() - start < 0.5, "another output dir's lock is its own"


# --- the Done-when, with the data dir in the bucket too -------------------------------

TINY = ("--backbone", "custom_cnn", "--weights", "none", "--input-size", "40x32",
        "--epochs", "1", "--bootstrap", "10")  # fmt: skip


def test_submit_over_s3_with_an_s3_data_dir_on_two_workers_with_their_own_caches(
    s3, tmp_path, shared_dir
):
    """The issue's Done-when: `jobs submit predict s3://…/posters --out s3://…/preds`, the
    data dir (model, run plans, index) in the bucket too, on two workers with separate
    local caches, one SIGKILLed mid-run: exactly one ok row per poster in the bucket."""
    bucket = s3.new_bucket()
    data_uri = bucket.uri_of("data")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    trainer = {**clean, **s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / "trainer"),
               "ANIGENRE_SHARED_DIR": str(shared_dir), "PYTHONPATH": str(ROOT)}  # fmt: skip
    labelled_folder(tmp_path / "labelled", 60, seed=0, other="Drama")
    done = run_cli("--data-dir", data_uri, "dataset", "import", str(tmp_path / "labelled"),
               env=trainer, cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_cli("--data-dir", data_uri, "train", *TINY, env=trainer, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    n = 40
    for i in range(n):
        bucket.write_bytes(f"posters/p{i:03d}.png", poster_png(900 + i))
    with own_redis(tmp_path / "redis") as (url, _):
        base = {**clean, **s3.env, **DRILL, "ANIGENRE_DATA_DIR": data_uri,
                "ANIGENRE_BROKER_URL": url, "ANIGENRE_SHARED_DIR": str(shared_dir),
                "PYTHONPATH": str(ROOT)}  # fmt: skip
        doomed = Worker("doomed", {**base, "ANIGENRE_CACHE_DIR": str(tmp_path / "c1")},
                        tmp_path / "doomed.log")  # fmt: skip
        other = Worker("other", {**base, "ANIGENRE_CACHE_DIR": str(tmp_path / "c2")},
                       tmp_path / "other.log")  # fmt: skip
        client_env = {**base, "ANIGENRE_CACHE_DIR": str(tmp_path / "client")}
        try:
            doomed.start()
            other.start()
            done = run_cli("jobs", "submit", "predict", bucket.uri_of("posters"), "--out",
                       bucket.uri_of("preds"), "--chunk-size", "2", "--engine", "keras",
                       env=client_env, cwd=tmp_path, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            run_id = done.stdout.split()[0]
            settings = load_settings(overrides={"data_dir": data_uri}, env=client_env)
            kill_after_two_chunks(load_plan(settings.data_uri, run_id, settings.s3), doomed, 180)
            waited = run_cli("jobs", "wait", run_id, "--timeout", "200", env=client_env,
                         cwd=tmp_path, timeout=240)  # fmt: skip
            assert waited.returncode == 0, waited.stdout + waited.stderr[-2000:]
        finally:
            doomed.kill()
            other.stop()
    rows = ds.dataset(bucket.path("preds", "predictions"), filesystem=bucket.fs,
                      partitioning="hive").to_table().to_pandas()  # fmt: skip
    assert len(rows) == n and rows["path"].is_unique and (rows["status"] == "ok").all()
    assert set(rows["run_id"].astype(str)) == {run_id}
    assert run_id in list_runs(data_uri, s3.options)
    assert bucket.exists("data", "runs", f"{run_id}.json")
    # Each worker fetched the model into its own cache; the survivor certainly did.
    assert list((tmp_path / "c2").rglob("model.keras"))


def test_an_s3_inbox_is_planned_from_the_bucket_and_only_new_posters_come_back(
    trained, s3, tmp_path
):
    """Inbox and output dir both in the bucket: runs, reports and the tick record land
    there, where every worker (whichever ran the tick) reaches them."""
    settings, _ = trained
    bucket = s3.new_bucket()
    inbox = upload_posters(bucket, 4, 300, prefix="inbox")
    out = bucket.uri_of("inbox-out")
    settings = s3_settings(
        settings, s3, cache_dir=tmp_path / "cache", inbox=inbox, inbox_model="latest",
        inbox_out=out,
    )  # fmt: skip
    assert settings.inbox_out_dir() == out

    first = plan_inbox(settings)
    assert first.report_when_complete and len(first.inputs) == 4 and first.out_dir == out
    assert all(e["path"].startswith(inbox + "/p") for e in first.inputs)
    release(first.files)  # what beat's tick does once the chunks are queued
    assert report_if_due(settings, first) is None, "not complete yet: no report"
    manifest = stages.predict_in_process(settings, first)
    assert (manifest["ok"], manifest["error"]) == (4, 0)

    # The finalising worker's report, in the bucket; written once.
    page = ("inbox-out", report_page(first.run_id))
    assert str(report_if_due(settings, first)) == bucket.uri_of(
        "inbox-out", "reports", first.run_id
    )
    assert bucket.exists(*page)
    assert report_if_due(settings, first) is None
    # A worker that died before writing it: the next tick finds the run and writes it.
    bucket.delete(*page)
    assert overdue_reports(settings) == [first.run_id] and bucket.exists(*page)
    assert overdue_reports(settings) == []

    assert last_tick(settings) is None
    record = Tick(at=now_iso(), inbox=inbox, model_id=first.model_id, run_id=first.run_id)
    record_tick(settings, record)
    assert bucket.exists("inbox-out", "_inbox_tick.json")
    assert last_tick(settings) == record

    nothing = plan_inbox(settings)
    assert not nothing.inputs and nothing.already_predicted == 4
    bucket.write_bytes("inbox/late.png", poster_png(399))
    late = plan_inbox(settings)
    assert [e["path"] for e in late.inputs] == [inbox + "/late.png"]


def test_submitting_local_posters_into_a_bucket_warns_that_other_machines_cannot_read_them(
    trained, s3, tmp_path
):
    settings, _ = trained
    bucket = s3.new_bucket()
    local = tmp_path / "posters"
    local.mkdir()
    (local / "a.png").write_bytes(poster_png(700))
    with own_redis(tmp_path / "redis") as (url, _client):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))},
            **s3.env,
            "ANIGENRE_DATA_DIR": str(settings.data_dir),
            "ANIGENRE_BROKER_URL": url,
        }
        into_bucket = run_cli(
            "jobs", "submit", "predict", str(local), "--out", bucket.uri_of("preds"), env=env
        )
        on_disk = run_cli(
            "jobs", "submit", "predict", str(local), "--out", str(tmp_path / "preds"), env=env
        )
    assert into_bucket.returncode == 0, into_bucket.stderr
    assert f"note: {local} is a local path; a worker on another machine" in into_bucket.stderr
    assert on_disk.returncode == 0 and "note:" not in on_disk.stderr


def test_the_inbox_out_defaults_to_the_bucket_and_refuses_other_schemes(s3, tmp_path):
    """With an s3:// data dir the inbox's runs land in the bucket, not in the local mirror
    of whichever worker ran the tick; an out dir no store can reach is one line."""
    overrides = {"data_dir": "s3://anigenre/data", "cache_dir": tmp_path / "cache"}
    settings = load_settings(overrides=overrides, env=s3.env)
    assert settings.inbox_out_dir() == "s3://anigenre/data/inbox-predictions"
    with pytest.raises(ConfigError) as bad:
        load_settings(env={"ANIGENRE_INBOX_OUT": "gs://x"})
    assert "gs://x" in str(bad.value) and len(str(bad.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="'//' lost"):
        load_settings(overrides={"inbox_out": Path("s3://b/inbox")}, env={})
