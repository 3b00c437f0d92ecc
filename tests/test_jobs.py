"""Bulk prediction: in-process, through real Celery workers on a real Redis, and under faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import redis
from anigenre.core.genres import Vocabulary
from anigenre.jobs import stages
from anigenre.jobs.runs.index import load_plan
from anigenre.jobs.runs.markers import finalize
from anigenre.jobs.runs.parts import PartCounts
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.runs.status import run_status

from tests import images as gen
from tests.procs import ROOT, RedisServer, Worker, own_redis, run_cli
from tests.synthetic import labelled_folder, poster_png, trained_tiny_model

VOCAB = Vocabulary()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """A small trained model in its own data dir: what every prediction test predicts with."""
    data = tmp_path_factory.mktemp("jobs-data")
    settings, model_id = trained_tiny_model(data, shared_dir)
    return settings, model_id


def make_folder(path, n_good: int, with_bad: bool = True):
    """``n_good`` distinct posters, a copy of one (a row of its own: ``n_good + 1`` real
    images), and (optionally) every kind of bad file."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        (path / f"p{i:03d}.png").write_bytes(poster_png(1000 + i))
    (path / "nested").mkdir(exist_ok=True)
    (path / "nested" / "copy.png").write_bytes(poster_png(1000))  # a duplicate of p000
    (path / "notes.txt").write_text("not an image, and not an image name either")
    if with_bad:
        (path / "zero.jpg").write_bytes(b"")
        (path / "cut.jpg").write_bytes(gen.encode("JPEG", size=(300, 400))[:600])
        (path / "page.jpg").write_bytes(b"<!DOCTYPE html><html>Not found</html>")
        (path / "bomb.png").write_bytes(gen.png_header_only(200_000, 200_000))
    return path


def read_run(plan) -> pd.DataFrame:
    """The run's rows as a user reads them: the hive-partitioned folder, filtered by run."""
    return pd.read_parquet(plan.parts_dir.parent, filters=[("run_id", "==", plan.run_id)])


def test_status_polls_reread_only_parts_that_changed(tmp_path):
    inputs = [{"path": f"/in/{i}.png", "size": 1, "sha256": f"{i:064x}"} for i in range(6)]
    plan = RunPlan(
        run_id="r1", model_id="m", out_dir=str(tmp_path), created="2026-01-01T00:00:00+00:00",
        top_k=4, chunk_size=3, inputs=inputs, chunks=[[0, 3], [3, 6]],
    )  # fmt: skip
    plan.parts_dir.mkdir(parents=True)
    pq.write_table(pa.table({"status": ["ok", "ok", "error"]}), plan.part_path(0))
    pq.write_table(pa.table({"status": ["ok"]}), plan.part_path(1))  # short: not done
    counts = PartCounts()
    first = run_status(plan, counts=counts)
    assert (first.chunks_done, first.rows_ok, first.rows_error) == (1, 2, 1)
    time.sleep(0.01)  # a new mtime, as a redone chunk would have
    pq.write_table(pa.table({"status": ["ok", "ok", "ok"]}), plan.part_path(1))
    second = run_status(plan, counts=counts)
    assert (second.chunks_done, second.rows_ok, second.rows_error) == (2, 5, 1)
    finalize(plan)
    for part in plan.parts_dir.glob("part-*.parquet"):
        part.unlink()  # a complete run is read from its manifest, not its parts
    done = run_status(plan)
    assert done.complete and (done.chunks_done, done.rows_ok, done.rows_error) == (2, 5, 1)


def test_in_process_predict_rows_errors_duplicates_and_readers(trained, tmp_path):
    settings, model_id = trained
    folder = make_folder(tmp_path / "in", 10)
    out = tmp_path / "out"
    plan = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out, chunk_size=4)
    assert plan.model_id == model_id and len(plan.inputs) == 15
    (dup,) = plan.duplicates
    assert {dup["path"].split("/")[-1], dup["same_as"].split("/")[-1]} == {"copy.png", "p000.png"}
    manifest = stages.predict_in_process(settings, plan)
    assert manifest["complete"] and manifest["ok"] == 11 and manifest["error"] == 4

    rows = read_run(plan)
    assert len(rows) == 15 and rows["path"].is_unique
    # The copy has its own row, with the probabilities computed once for both.
    by_name = rows.set_index(rows["path"].map(lambda p: p.split("/")[-1]))
    assert by_name.loc["copy.png", VOCAB.columns()].equals(by_name.loc["p000.png", VOCAB.columns()])
    errors = rows[rows.status == "error"].set_index(
        rows[rows.status == "error"]["path"].map(lambda p: p.split("/")[-1])
    )
    assert errors.loc["zero.jpg", "error"].startswith("empty")
    assert errors.loc["cut.jpg", "error"].startswith("corrupt")
    assert errors.loc["page.jpg", "error"].startswith("not-an-image")
    assert errors.loc["bomb.png", "error"].startswith("decompression-bomb")
    ok = rows[rows.status == "ok"]
    assert ok[VOCAB.columns()].notna().all().all() and ok["top_genres"].map(len).eq(4).all()
    assert {"p_action", "p_sci_fi", "p_slice_of_life", "p_mahou_shoujo"} <= set(rows.columns)
    assert (rows["run_id"].astype(str) == plan.run_id).all()

    # The model's thresholds decide `predicted`.
    thresholds = json.loads(
        (settings.data_dir / "models" / model_id / "manifest.json").read_text()
    )["thresholds"]
    for r in ok.itertuples():
        expected = {
            g
            for g, c in zip(VOCAB.genres, VOCAB.columns(), strict=True)
            if getattr(r, c) >= thresholds[g]
        }
        assert set(r.predicted) == expected

    # The schema is declared once and used as written; pyarrow.dataset and DuckDB read it too.
    part = pa.parquet.read_schema(plan.part_path(0))
    assert part.field("p_action").type == pa.float32()
    data = pads.dataset(out / "predictions", format="parquet", partitioning="hive")
    assert data.count_rows() == 15
    glob = f"{out}/predictions/*/*.parquet"
    counts = duckdb.execute(
        "select status, count(*) from read_parquet(?, hive_partitioning=true) group by 1", [glob]
    ).fetchall()
    assert dict(counts) == {"ok": 11, "error": 4}


def test_resubmitting_predicts_only_what_has_no_ok_row(trained, tmp_path):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 6, with_bad=False)
    out = tmp_path / "out"
    first = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)
    stages.predict_in_process(settings, first)
    (folder / "new.png").write_bytes(poster_png(5000))
    (folder / "zero.jpg").write_bytes(b"")
    again = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)
    assert sorted(i["path"].split("/")[-1] for i in again.inputs) == ["new.png", "zero.jpg"]
    assert again.already_predicted == 7  # the six posters and the copy
    forced = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out, force=True)
    assert len(forced.inputs) == 9


def test_report_writes_summary_html_and_scores_labels(trained, tmp_path):
    settings, _ = trained
    labelled = tmp_path / "labelled"
    labelled_folder(labelled, 12, seed=7000, other="Comedy")
    (labelled / "images" / "bad.jpg").write_bytes(b"<html>")
    plan = stages.plan_prediction(
        settings, [labelled / "images"], model_id="latest", out_dir=tmp_path / "out"
    )
    stages.predict_in_process(settings, plan)

    report = stages.report_run(settings, plan.run_id)
    summary = pd.read_parquet(report.folder / "summary.parquet")
    assert set(summary.section) >= {
        "predicted_genre",
        "top1_genre",
        "confidence_histogram",
        "errors",
    }
    hist = summary[summary.section == "confidence_histogram"]["count"]
    assert hist.sum() == 12 and len(hist) == 10
    assert summary[(summary.section == "errors")].set_index("name")["count"].to_dict() == {
        "not-an-image": 1
    }
    top1 = summary[summary.section == "top1_genre"]["count"].sum()
    assert top1 == 12
    ap = report.per_genre_ap.set_index("genre")
    assert ap.loc["Action", "support"] == 6 and pd.isna(ap.loc["Drama", "ap"])
    page = (report.folder / "report.html").read_text()
    assert page.count('class="g"') == 12 and "data:image/jpeg;base64," in page
    assert "Per-genre AP" in page and (report.folder / "predicted_genres.png").exists()


def test_unreachable_broker_is_one_clear_line(trained, tmp_path):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 2, with_bad=False)
    env = {**_clean_env(), "ANIGENRE_DATA_DIR": str(settings.data_dir)}
    result = run_cli(
        "jobs",
        "--broker",
        "redis://:hunter2@127.0.0.1:1/0",
        "submit",
        "predict",
        str(folder),
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the broker at redis://:**@127.0.0.1:1/0" in lines[0]
    assert "resume" not in lines[0] and "then run the command again" in lines[0]
    assert "hunter2" not in result.stderr
    assert not (settings.data_dir / "runs").exists() or not any(
        json.loads(p.read_text())["out_dir"].startswith(str(folder))
        for p in (settings.data_dir / "runs").glob("*.json")
    )


# --- through real workers ---------------------------------------------------------------


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}


def _worker_env(settings, broker: str, visibility: int = 3600) -> dict:
    return {
        **_clean_env(),
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "ANIGENRE_BROKER_URL": broker,
        "ANIGENRE_TASK_VISIBILITY_TIMEOUT_S": str(visibility),
        "ANIGENRE_BROKER_RESTORE_INTERVAL_S": "1",
        "ANIGENRE_SWEEP_INTERVAL_S": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def _submit(settings, broker, folder, out, chunk_size, *flags: str) -> str:
    env = _worker_env(settings, broker)
    result = run_cli(
        "jobs",
        "submit",
        "predict",
        str(folder),
        "--out",
        str(out),
        "--chunk-size",
        str(chunk_size),
        *flags,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


def _wait_complete(settings, run_id, timeout=120) -> None:
    plan = load_plan(settings.data_dir, run_id)
    deadline = time.monotonic() + timeout
    while not plan.manifest_path.exists():
        assert time.monotonic() < deadline, run_status(plan)
        time.sleep(0.2)


def _wait_for_parts(plan, n: int, worker: Worker, timeout: float = 90) -> None:
    """Until ``n`` chunks are written: the moment to break something mid-run."""
    deadline = time.monotonic() + timeout
    while run_status(plan).chunks_done < n:
        assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
        time.sleep(0.02)


def _exactly_once(settings, run_id, expected_files: int) -> pd.DataFrame:
    plan = load_plan(settings.data_dir, run_id)
    rows = read_run(plan)
    assert len(rows) == expected_files and rows["path"].is_unique
    manifest = json.loads(plan.manifest_path.read_text())
    assert manifest["rows"] == expected_files
    return rows


@pytest.fixture
def main_redis(tmp_path):
    with own_redis(tmp_path / "redis") as (url, _):
        yield url


def test_worker_runs_a_job_and_cli_follows_it(trained, tmp_path, main_redis):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 12)
    worker = Worker("w1", _worker_env(settings, main_redis), tmp_path / "w1.log").start()
    try:
        run_id = _submit(settings, main_redis, folder, tmp_path / "out", chunk_size=3)
        env = _worker_env(settings, main_redis)
        waited = run_cli("jobs", "wait", run_id, "--timeout", "120", env=env, timeout=180)
        assert waited.returncode == 0, waited.stderr
        assert "[complete]" in waited.stdout and "13 ok, 4 error" in waited.stdout
        status = run_cli("jobs", "status", run_id, env=env, timeout=60)
        assert "6/6 chunks" in status.stdout and "17/17 rows" in status.stdout
    finally:
        worker.stop()
    rows = _exactly_once(settings, run_id, 17)
    assert (rows.status == "ok").sum() == 13


def test_sigkilled_worker_work_is_redone_not_duplicated(trained, tmp_path):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 80, with_bad=False)
    server = RedisServer(tmp_path / "redis").start()
    env = _worker_env(settings, server.url, visibility=5)
    first = Worker("killed", env, tmp_path / "killed.log").start()
    second = None
    try:
        # Keras, the slower engine: a worker that reads only its own part per chunk runs
        # 80 one-poster chunks on LiteRT before a poll sees three of them.
        run_id = _submit(settings, server.url, folder, tmp_path / "out", 1, "--engine", "keras")
        plan = load_plan(settings.data_dir, run_id)
        _wait_for_parts(plan, 3, first)
        first.kill()
        assert not plan.manifest_path.exists(), (
            "the run finished before the kill; the test proves nothing"
        )
        done_at_kill = run_status(plan).chunks_done
        second = Worker("rescuer", env, tmp_path / "rescuer.log").start()
        _wait_complete(settings, run_id, timeout=120)
    finally:
        for w in (first, second):
            if w:
                w.stop()
        server.kill()
    assert done_at_kill < 80
    _exactly_once(settings, run_id, 81)


def test_a_message_the_broker_lost_is_requeued_by_the_workers(trained, tmp_path, main_redis):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 6, with_bad=False)
    run_id = _submit(settings, main_redis, folder, tmp_path / "out", chunk_size=2)
    # Popped and never recorded as unacknowledged: what a worker killed inside kombu's
    # BRPOP-then-record window leaves behind. No visibility timeout brings it back.
    assert redis.Redis.from_url(main_redis).rpop("predict") is not None
    worker = Worker("sweeper", _worker_env(settings, main_redis), tmp_path / "w.log").start()
    try:
        _wait_complete(settings, run_id, timeout=90)
    finally:
        worker.stop()
    _exactly_once(settings, run_id, 7)
    assert "re-queued 1 lost chunk(s) [0]" in worker.log.read_text()


def test_two_workers_on_one_run_write_each_file_once(trained, tmp_path, main_redis):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 30, with_bad=False)
    env = _worker_env(settings, main_redis)
    workers = [Worker(f"twin{i}", env, tmp_path / f"twin{i}.log").start() for i in range(2)]
    try:
        run_id = _submit(settings, main_redis, folder, tmp_path / "out", chunk_size=2)
        _wait_complete(settings, run_id)
    finally:
        for w in workers:
            w.stop()
    _exactly_once(settings, run_id, 31)
    served = ["Task jobs.tasks.predict_chunk" in w.log.read_text() for w in workers]
    assert all(served), "both workers should have taken chunks"


def test_redis_restart_mid_run_completes(trained, tmp_path):
    """Redis is SIGKILLed mid-run and restarted from its append-only file. A message popped
    but not yet recorded as unacknowledged can be lost in that instant (Redis is not a
    transactional broker); the workers' sweeper re-queues such chunks."""
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 60, with_bad=False)
    server = RedisServer(tmp_path / "redis").start()
    env = _worker_env(settings, server.url, visibility=5)
    worker = Worker("survivor", env, tmp_path / "survivor.log").start()
    try:
        run_id = _submit(
            settings, server.url, folder, tmp_path / "out", 1, "--engine", "keras"
        )  # Keras: on LiteRT the run can be over before the kill lands
        plan = load_plan(settings.data_dir, run_id)
        _wait_for_parts(plan, 3, worker)
        server.kill()
        assert not plan.manifest_path.exists()
        time.sleep(1.0)
        server.start()  # same port, same append-only file: the queue is still there
        waited = run_cli("jobs", "wait", run_id, "--timeout", "150", env=env, timeout=200)
        assert waited.returncode == 0, waited.stderr[-2000:]
    finally:
        worker.stop()
        server.kill()
    _exactly_once(settings, run_id, 61)


def test_killed_in_process_predict_is_finished_by_resume(trained, tmp_path):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 150, with_bad=False)
    env = {**_clean_env(), "ANIGENRE_DATA_DIR": str(settings.data_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    before = (
        set((settings.data_dir / "runs").glob("*.json"))
        if (settings.data_dir / "runs").exists()
        else set()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "predict",
            str(folder),
            "--out",
            str(tmp_path / "out"),
            "--chunk-size",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    plan = None
    while plan is None or run_status(plan).chunks_done < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        new = (
            set((settings.data_dir / "runs").glob("*.json")) - before
            if (settings.data_dir / "runs").exists()
            else set()
        )
        if new and plan is None:
            plan = load_plan(settings.data_dir, new.pop().stem)
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not plan.manifest_path.exists(), "finished before the kill; the test proves nothing"
    resumed = run_cli("jobs", "resume", plan.run_id, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[complete]" in resumed.stdout
    _exactly_once(settings, plan.run_id, 151)  # the nested copy has its own row
