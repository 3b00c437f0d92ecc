"""The inbox on a schedule, end to end: a real redis-server, a real predict worker and a
real ``anigenre beat`` ticking every 2 seconds (``ANIGENRE_INBOX_SCHEDULE=2``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from anigenre.config import load_settings
from anigenre.jobs.cli import main
from anigenre.jobs.queue.app import create_app
from anigenre.jobs.queue.inbox import tick
from anigenre.jobs.runs.index import list_runs, load_plan
from anigenre.jobs.stages.inbox import last_tick, report_page

from tests.procs import ROOT, Worker, own_redis
from tests.synthetic import poster_folder, trained_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("inbox-data")
    _, model_id = trained_tiny_model(data, shared_dir, epochs=1)
    return data, model_id


def _env(data: Path, inbox: Path, broker: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    return env | {
        "ANIGENRE_DATA_DIR": str(data),
        "ANIGENRE_BROKER_URL": broker,
        "ANIGENRE_INBOX": str(inbox),
        "ANIGENRE_INBOX_SCHEDULE": "2",
        "ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "",
        "ANIGENRE_PREDICT_CHUNK_SIZE": "2",
        "ANIGENRE_SWEEP_INTERVAL_S": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


class Beat:
    """``anigenre beat`` as deployed, in its own process group."""

    def __init__(self, env: dict, log: Path) -> None:
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "anigenre.jobs.cli", "beat", "--loglevel", "DEBUG"]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def _until(what, check, timeout: float, *logs: Path):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)
    return found


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "predictions")


def test_beat_predicts_only_new_inbox_posters_and_reports_each_run(model, tmp_path):
    data, model_id = model
    inbox = poster_folder(tmp_path / "inbox", 4, seed=300)
    (inbox / "broken.png").write_bytes(b"<html>not a poster</html>")  # an error row, once
    out = data / "inbox-predictions"
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(data, inbox, url)
        settings = load_settings(env=env)
        assert settings.inbox_out_dir() == out
        app = create_app(settings)

        # No alias yet: the tick says so in one line and queues nothing.
        first = tick(app, settings)
        assert first.error == (
            "no alias 'production'; set one with 'anigenre models promote ID --as production'"
        )
        assert list_runs(data) == [] and last_tick(settings).error == first.error
        assert main(["--data-dir", str(data), "models", "promote", model_id], env={}) == 0

        # Two ticks before any worker runs: the second leaves the first's files to it.
        queued = tick(app, settings)
        assert queued.run_id and queued.files == 5 and queued.model_id == model_id
        again = tick(app, settings)
        assert again.run_id is None and again.in_live_runs == {queued.run_id: 5}
        assert list_runs(data) == [queued.run_id]

        worker = Worker("inbox", env, tmp_path / "worker.log").start()
        beat = Beat(env, tmp_path / "beat.log")
        logs = (worker.log, beat.log)
        try:
            # The worker that finalises the run writes its report.
            _until("run 1's report", (out / report_page(queued.run_id)).exists, 90, *logs)
            assert load_plan(data, queued.run_id).report_when_complete
            written = f"'report': '{(out / report_page(queued.run_id)).parent}'"
            _until("the worker's report line", lambda: written in worker.log.read_text(), 10)
            rows = _rows(out)
            assert len(rows) == 5 and set(rows["model_id"]) == {model_id}
            assert rows.set_index("status")["path"]["error"].endswith("broken.png")

            # Beat ticks with nothing new (the broken poster is not retried): no run.
            done_at = time.time()
            _until(
                "a beat tick after run 1",
                lambda: (t := last_tick(settings)) and _epoch(t.at) > done_at + 1,
                30,
                *logs,
            )
            assert last_tick(settings).run_id is None and list_runs(data) == [queued.run_id]
            assert last_tick(settings).already_predicted == 5

            # Three new posters: the next run predicts those three only, and reports.
            poster_folder(inbox, 3, seed=400, name="new{i}")
            second = _until(
                "run 2", lambda: [r for r in list_runs(data) if r != queued.run_id], 30, *logs
            )[0]
            plan = load_plan(data, second)
            assert sorted(Path(e["path"]).name for e in plan.inputs) == [
                "new0.png",
                "new1.png",
                "new2.png",
            ]
            _until("run 2's report", (out / report_page(second)).exists, 60, *logs)
            rows = _rows(out)
            assert len(rows) == 8 and rows["path"].is_unique

            # A report lost (its worker died before writing it) is written by a later tick.
            shutil.rmtree((out / report_page(second)).parent)
            _until("the report rewritten", (out / report_page(second)).exists, 30, *logs)
            assert len(list_runs(data)) == 2
        finally:
            beat.stop()
            worker.stop()
    assert "Scheduler: Sending due task inbox (jobs.tasks.predict_inbox)" in beat.log.read_text()
    ticks = json.loads((out / "_inbox_tick.json").read_text())
    assert ticks["run_id"] is None and ticks["model_id"] == model_id


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_an_empty_inbox_is_quiet_and_a_missing_one_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a poster")
    env = {
        "ANIGENRE_DATA_DIR": str(tmp_path / "data"),
        "ANIGENRE_INBOX": str(tmp_path / "empty"),
        "ANIGENRE_BROKER_URL": "redis://127.0.0.1:1/0",  # nothing must be published
    }
    settings = load_settings(env=env)
    app = create_app(settings)
    quiet = tick(app, settings)
    assert (quiet.error, quiet.run_id, quiet.line()) == (
        None,
        None,
        f"inbox {tmp_path / 'empty'}: no images",
    )
    missing = load_settings(env=env | {"ANIGENRE_INBOX": str(tmp_path / "nope")})
    record = tick(app, missing)
    assert record.error == f"{tmp_path / 'nope'} does not exist; give image files or folders"
    assert last_tick(missing).error == record.error
    assert list_runs(settings.data_dir) == []


def test_a_report_that_cannot_be_written_does_not_stop_the_inbox(model, tmp_path):
    from anigenre.jobs.stages import predict_in_process
    from anigenre.jobs.stages.inbox import plan_inbox

    data, model_id = model
    assert main(["--data-dir", str(data), "models", "promote", model_id], env={}) == 0
    inbox = poster_folder(tmp_path / "inbox", 2, seed=500)
    env = {
        "ANIGENRE_DATA_DIR": str(data),
        "ANIGENRE_INBOX": str(inbox),
        "ANIGENRE_INBOX_OUT": str(tmp_path / "out"),
    }
    settings = load_settings(env=env)
    plan = plan_inbox(settings)
    predict_in_process(settings, plan)  # complete, and no worker wrote its report
    (tmp_path / "out" / report_page(plan.run_id)).parent.parent.mkdir(parents=True)
    (tmp_path / "out" / report_page(plan.run_id)).parent.write_text("a file where a folder goes")
    poster_folder(inbox, 1, seed=600, name="late{i}")
    with own_redis(tmp_path / "redis") as (url, client):
        settings = load_settings(env=env | {"ANIGENRE_BROKER_URL": url})
        record = tick(create_app(settings), settings)
        assert client.llen("predict") == 1  # the new poster's one chunk
    assert record.reported == [] and record.error is None
    assert record.run_id is not None and record.files == 1
