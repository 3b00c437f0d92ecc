"""The one service under every front end (jobs.service), and the Python API's runs on it
(anigenre.predict / submit / Run): in-process and on a real worker and Redis."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest
from anigenre.jobs.service import runs, tasks
from anigenre.jobs.service.dispatch import InProcess, TaskState

import anigenre
from tests.procs import Worker, own_redis, run_cli
from tests.synthetic import poster_folder, trained_tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("service-data")
    return trained_tiny_model(data, shared_dir, epochs=1)


def test_predict_then_force_keeps_history_and_one_current_row_per_poster(trained, tmp_path):
    settings, model_id = trained
    folder = poster_folder(tmp_path / "in", 40, seed=300)
    out = tmp_path / "out"

    first = anigenre.predict(folder, out=out, settings=settings)
    assert first.status().state == "complete"
    assert anigenre.predict(folder, out=out, settings=settings) is None, "nothing new"
    second = anigenre.predict(folder, out=out, force=True, settings=settings)

    history = pd.read_parquet(out / "predictions")
    current = anigenre.read_predictions(out, settings=settings)
    assert len(history) == 80 and len(current) == 40
    assert set(current["run_id"]) == {second.id}, "the newest run's rows are the answer"
    table = second.table().set_index("path")
    current = current.set_index("path").loc[table.index]
    genres = [c for c in table.columns if c.startswith("p_")]
    assert (table[genres] - current[genres]).abs().to_numpy().max() < 1e-4
    model = anigenre.load_model(model_id, settings=settings)
    rows = model.predict(sorted(str(p) for p in folder.iterdir())).set_index("path")
    assert (rows[genres] - table.loc[rows.index, genres]).abs().to_numpy().max() < 1e-4


def test_submit_without_a_broker_runs_in_a_thread_here(trained, tmp_path):
    """No broker: submit returns once the run is planned, a thread of this process
    predicts it, and a second submit of the same folder meanwhile predicts nothing twice."""
    settings, _ = trained
    folder = poster_folder(tmp_path / "in", 6, seed=1)
    run = anigenre.submit(folder, out=tmp_path / "out", settings=settings, chunk_size=2)
    again = anigenre.submit(folder, out=tmp_path / "out", settings=settings)
    assert again is None, "the first run holds (or has predicted) every file"
    final = run.wait(timeout=120)
    assert (final.state, final.rows_ok) == ("complete", 6)
    assert len(pd.read_parquet(tmp_path / "out" / "predictions")) == 6, "one row per poster"


def test_in_process_dispatch_runs_a_stage_call_and_knows_its_state(trained, tmp_path):
    settings, _ = trained
    here = InProcess(settings)
    folder = tmp_path / "labelled"
    from tests.synthetic import labelled_folder

    labelled_folder(folder, 4, seed=9, other="Drama")
    task_id = here.send("import_dataset", folder=str(folder))
    assert here.result(task_id)["total"] >= 4
    assert here.state(task_id).state == "SUCCESS"
    assert here.state("nope") == TaskState(None)


def test_a_queued_run_and_task_through_a_real_worker(trained, tmp_path):
    """The Python API's submit and the CLI read the same run; its task records are
    listed by the service for any front end."""
    settings, _ = trained
    folder = poster_folder(tmp_path / "in", 6, seed=700)
    with own_redis(tmp_path / "redis") as (url, _client):
        run = anigenre.submit(folder, out=tmp_path / "out", broker=url, settings=settings,
                              chunk_size=2)  # fmt: skip
        assert run.status().state in ("queued", "stalled"), "no worker yet"
        env = {**_env(settings), "ANIGENRE_BROKER_URL": url}
        w = Worker("svc", env, tmp_path / "worker.log").start()
        try:
            final = run.wait(timeout=120)
        finally:
            w.stop()
        assert (final.state, final.rows_ok) == ("complete", 6)
        assert len(run.table()) == 6
        listed = run_cli("jobs", "list", "--limit", "1", env=env)
        assert run.id in listed.stdout and str(tmp_path / "out") in listed.stdout
        with_broker = settings.model_copy(update={"broker_url": url})
        record = tasks.TaskRecords(with_broker).add("t-1", "scrape", "scrape")
        views = tasks.task_views(with_broker, None)
        assert [v["id"] for v in views] == [record.task_id]


def test_resume_of_a_finished_run_says_nothing_was_left(trained, tmp_path):
    settings, _ = trained
    run = anigenre.predict(poster_folder(tmp_path / "in", 3, seed=50), settings=settings)
    done = runs.resume(settings, run.id, InProcess(settings))
    assert (done.chunks, done.status.state) == (0, "complete")
    shown = run_cli("jobs", "resume", run.id, env=_env(settings))
    assert "nothing left to redo" in shown.stdout, shown.stdout + shown.stderr


def test_runs_are_listed_newest_first_with_a_limit(trained, tmp_path):
    settings, _ = trained
    ids = [
        anigenre.predict(poster_folder(tmp_path / f"in{i}", 1, seed=900 + i), settings=settings).id
        for i in range(3)
    ]
    listed = [e.run_id for e in runs.runs(settings, limit=2)]
    assert listed == ids[::-1][:2]


def _env(settings) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    return {**clean, "ANIGENRE_DATA_DIR": str(settings.data_dir), "PYTHON": sys.executable}
