"""The poster page and run browser: page logic through Streamlit's AppTest (the real
script, real model, real run files), its pure helpers, and the ``anigenre web`` command."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from anigenre.config import load_settings
from anigenre.core.errors import ConfigError, InvalidImage
from anigenre.core.genres import GENRES, Vocabulary
from anigenre.core.images import decode_image
from anigenre.core.predictions import prediction_table
from anigenre.core.tables import write_table
from anigenre.core.urls import masked_url
from anigenre.jobs import stages
from anigenre.jobs.runs.chunks import execute_chunk
from anigenre.jobs.runs.index import index_home, load_plan, record_run
from anigenre.jobs.runs.markers import finalize, mark_failed, mark_queued
from anigenre.jobs.runs.plan import RunPlan, plan_run
from anigenre.jobs.service import runs as runs_service
from anigenre.jobs.web import runs as data
from anigenre.jobs.web.posters import upload_message
from anigenre.jobs.web.submit import folder_location, output_location
from streamlit.testing.v1 import AppTest

from tests import images as gen
from tests.procs import ROOT, own_redis, run_cli
from tests.synthetic import poster_folder, poster_png
from tests.test_jobs import _clean_env, trained  # noqa: F401 - fixture

APP = ROOT / "jobs" / "web" / "app.py"
FIRST_RUN_S = 180  # the first run imports TensorFlow and loads the model on a busy machine


def shared_inbox(shared_dir, dest, n: int = 10):
    """A labelled folder of ``n`` real posters (copied) plus one file that is not an image."""
    with open(shared_dir / "data" / "posters" / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader)[:n], reader.fieldnames
    (dest / "images").mkdir(parents=True)
    for r in rows:
        shutil.copy(shared_dir / "data" / "posters" / "images" / r["file"], dest / "images")
    (dest / "images" / "broken.jpg").write_bytes(b"<!DOCTYPE html><html>Not found</html>")
    with open(dest / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dest


@pytest.fixture(scope="module")
def site(trained, shared_dir, tmp_path_factory):  # noqa: F811 - fixture
    """The tiny model's data dir with one complete run over real posters and its report."""
    settings, model_id = trained
    inbox = shared_inbox(shared_dir, tmp_path_factory.mktemp("web-inbox"))
    plan = stages.plan_prediction(
        settings, [inbox / "images"], model_id=model_id, out_dir=None, chunk_size=4
    )
    stages.predict_in_process(settings, plan)
    stages.report_run(settings, plan.run_id)
    return settings, model_id, plan.run_id


@pytest.fixture
def page(site, monkeypatch):
    """An AppTest of the real script, started as ``anigenre web`` starts it: the data dir
    in ANIGENRE_DATA_DIR, the model after ``--``."""

    def start(model: str = "latest", **env) -> AppTest:
        settings = site[0]
        for key in [k for k in os.environ if k.startswith("ANIGENRE_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("ANIGENRE_DATA_DIR", str(settings.data_dir))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", [str(APP), "--model", model])
        at = AppTest.from_file(APP, default_timeout=FIRST_RUN_S)
        return at.run()

    return start


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [p.proto.text for p in at.get("progress")]
    return "\n".join(parts)


# -- Try a poster ----------------------------------------------------------------------


def test_an_uploaded_poster_shows_its_top_genres_and_which_pass_the_thresholds(page, site):
    _, model_id, _ = site
    at = page()
    assert not at.exception and not at.error
    assert model_id in _texts(at)  # the model used is on the page
    at.file_uploader[0].set_value(("poster.png", poster_png(7, genres=("Action",)), "image/png"))
    at.run()
    assert not at.exception and not at.error
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 5  # the default top 5, each with its probability bar
    shown = [b.split(" 0.")[0].split(" 1.")[0] for b in bars]
    assert set(shown) <= set(GENRES) and len(set(shown)) == 5
    assert all(("passes its threshold" in b) or ("below its threshold" in b) for b in bars)
    top = next(m.value for m in at.markdown if "top genres" in m.value)
    assert top == "**poster.png**: top genres " + ", ".join(shown)
    passing = next(m.value for m in at.markdown if "Passes the model's thresholds" in m.value)
    assert passing.startswith("**Passes the model's thresholds:**")
    assert at.get("imgs") or at.get("image")  # the poster itself is shown


def test_bad_uploads_get_one_line_each_and_the_good_one_still_shows(page):
    at = page()
    bad = {
        "notes.txt": b"just some text, not a picture at all",
        "page.jpg": b"<!DOCTYPE html><html>Not found</html>",
        "cut.jpg": gen.encode("JPEG", size=(300, 400))[:600],
        "bomb.png": gen.png_header_only(200_000, 200_000),
        "empty.png": b"",
    }
    files = [(name, body, "application/octet-stream") for name, body in bad.items()]
    files.append(("good.png", poster_png(3), "image/png"))
    at.file_uploader[0].set_value(files)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == len(bad)
    for name, message in zip(bad, errors, strict=True):
        assert message.startswith(name) and "\n" not in message and "Traceback" not in message
    assert "is not an image" in errors[0] and "is not an image" in errors[1]
    assert "truncated or corrupt" in errors[2]
    assert "decompression bomb" in errors[3] or "too large" in errors[3]
    assert "empty" in errors[4]
    assert any("**good.png**: top genres" in m.value for m in at.markdown)


def test_the_model_is_loaded_once_per_server_not_per_upload(page, monkeypatch):
    import anigenre.jobs.stages.predict

    st.cache_resource.clear()
    loads = []
    real = anigenre.jobs.stages.predict.load_predictor
    monkeypatch.setattr(
        anigenre.jobs.stages.predict,
        "load_predictor",
        lambda *a, **k: loads.append(a) or real(*a, **k),
    )
    first = page()
    for i in range(3):
        first.file_uploader[0].set_value((f"p{i}.png", poster_png(20 + i), "image/png"))
        first.run()
    second = page()  # another browser tab: a new session of the same server
    second.file_uploader[0].set_value(("q.png", poster_png(40), "image/png"))
    second.run()
    assert not first.exception and not second.exception
    assert any("**q.png**: top genres" in m.value for m in second.markdown)
    assert len(loads) == 1


def test_the_served_model_stays_warm_across_script_runs(page):
    """Streamlit resets Keras when each script run ends (clear_session: kernel caches
    emptied, so the next upload pays ~1 s to rebuild them); the page turns that off."""
    import keras

    at = page(ANIGENRE_PREDICT_ENGINE="keras")  # the first view loads the model
    at.file_uploader[0].set_value(("w.png", poster_png(50), "image/png"))
    at.run()  # ... and this run ends with Streamlit's clean-up
    before = keras.layers.Dense(1).name
    at.run()
    after = keras.layers.Dense(1).name
    # clear_session also restarts Keras's layer names: both would be plain "dense".
    assert before != after, (before, after)


def test_the_try_page_predicts_with_the_apis_model_on_the_settings_engine(page, site):
    """One poster model below every front end: the page's genres are load_model's."""
    from anigenre.jobs.web.posters import predict_upload

    import anigenre

    settings, model_id, _ = site
    data = poster_png(8, genres=("Drama",))
    for engine in ("litert", "keras"):
        at = page(ANIGENRE_PREDICT_ENGINE=engine)
        assert f"engine {engine}" in _texts(at)
        at.file_uploader[0].set_value(("d.png", data, "image/png"))
        at.run()
        assert not at.exception and not at.error
        shown = [p.proto.text for p in at.get("progress")]
        model = anigenre.load_model(model_id, settings=settings, engine=engine)
        (row,) = model.predict([data], top_k=5).to_dict("records")
        assert [b.split(" (")[0].rsplit(" ", 1)[0] for b in shown] == list(row["top_genres"])
        result = predict_upload(model, "d.png", data)
        assert [s.genre for s in result.scores[:5]] == list(row["top_genres"])
        assert result.passing == list(row["predicted"])


def test_without_a_trained_model_the_page_says_how_to_get_one(page, tmp_path):
    at = page(ANIGENRE_DATA_DIR=str(tmp_path / "empty"))
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert "no trained models" in message and "anigenre train" in message


def test_settings_that_do_not_load_are_one_line_on_the_page(page):
    at = page(ANIGENRE_MAX_IMAGE_PIXELS="lots")
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert message.startswith("anigenre: error: setting 'max_image_pixels'")


# -- Runs ------------------------------------------------------------------------------


def test_runs_page_lists_the_run_and_opens_it_with_its_rows(page, site):
    _, model_id, run_id = site
    at = page()
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error
    listing = at.dataframe[0].value.set_index("run_id")
    assert listing.loc[run_id, "state"] == "complete" and listing.loc[run_id, "rows"] == "11/11"
    assert at.selectbox(key="run").value == listing.index[0]  # the newest opens first
    at.selectbox(key="run").set_value(run_id).run()
    assert any(h.value == f"Run {run_id}" for h in at.header)
    table = at.dataframe[1].value
    assert len(table) == 11 and set(table["status"]) == {"ok", "error"}
    assert "true genres" in table.columns  # the inbox has a labels.csv
    assert table.loc[table["status"] == "ok", "true genres"].str.len().gt(0).all()
    downloads = [b.proto.label for b in at.get("download_button")]
    assert downloads == ["Download report.html", "Parquet", "CSV"]


def test_run_filters_errors_only_genre_probability_and_name(page, site):
    settings, _, run_id = site
    plan = load_plan(settings.data_dir, run_id)
    rows = pd.concat(pd.read_parquet(plan.part_path(i)) for i in range(len(plan.chunks)))
    ok = rows[rows["status"] == "ok"]
    genre = ok["predicted"].explode().value_counts().index[0]  # predicted for some rows
    column = Vocabulary().columns()[GENRES.index(genre)]
    at = page()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="run").set_value(run_id).run()

    at.checkbox(key="f_errors").check().run()
    table = at.dataframe[1].value
    assert table["file"].tolist() == ["broken.jpg"] and table["error"].iloc[0].startswith(
        "not-an-image"
    )

    at.checkbox(key="f_errors").uncheck()
    at.multiselect(key="f_genres").set_value([genre]).run()
    table = at.dataframe[1].value
    expected = ok[ok["predicted"].map(lambda g: genre in g)]
    assert sorted(table["file"]) == sorted(expected["path"].map(lambda p: p.rsplit("/", 1)[1]))

    cut = float(expected[column].median())
    at.slider(key="f_prob").set_value(cut).run()
    table = at.dataframe[1].value
    kept = expected[expected[column] >= cut]
    assert 0 < len(table) == len(kept) <= len(expected)

    at.multiselect(key="f_genres").set_value([])
    at.slider(key="f_prob").set_value(0.0)
    first = ok["path"].iloc[0].rsplit("/", 1)[1]
    at.text_input(key="f_name").input(first[:12].upper()).run()
    assert first in at.dataframe[1].value["file"].tolist()
    assert not at.exception


def test_runs_page_without_runs_says_how_to_make_one(page, tmp_path):
    at = page(ANIGENRE_DATA_DIR=str(tmp_path / "none"))
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    assert "anigenre predict FOLDER" in at.info[0].value


@pytest.fixture
def bucket_env(s3, tmp_path, monkeypatch):
    """``anigenre web``'s environment with an s3:// data dir on moto's server: the AWS
    variables a MinIO or R2 user sets, and nothing of this machine's own."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "ANIGENRE_"))]:
        monkeypatch.delenv(key)
    bucket = s3.new_bucket()
    env = {
        **s3.env,
        "ANIGENRE_DATA_DIR": bucket.uri_of("data"),
        "ANIGENRE_CACHE_DIR": str(tmp_path / "cache"),
    }
    return bucket, env


def test_the_pages_settings_reach_the_bucket_the_cli_reaches(s3, bucket_env, monkeypatch):
    from anigenre.jobs.web import context

    bucket, env = bucket_env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = context.settings()
    cli = load_settings(env=env)  # what every `anigenre` command reads from this shell
    assert s.s3.endpoint_url == s3.endpoint and s.s3 == cli.s3
    assert s.data_uri == bucket.uri_of("data")
    assert s.data_dir == cli.data_dir  # one mirror of the data dir, not one per reader


def test_an_s3_data_dir_lists_the_runs_in_the_buckets_index(page, s3, bucket_env):
    bucket, env = bucket_env
    data_uri = env["ANIGENRE_DATA_DIR"]
    at = page(**env)
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error
    # The bucket's location, not the mirror under the cache dir.
    assert f"No runs recorded in {data_uri}/runs yet" in at.info[0].value
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.error
    assert f"No trained models in {data_uri}/models" in at.info[0].value

    settings = load_settings(env=env)
    plan = RunPlan(
        run_id="20261128T120000-abcd",
        model_id="m",
        out_dir=bucket.uri_of("preds"),
        created="2026-11-28T12:00:00+00:00",
        top_k=4,
        chunk_size=2,
        inputs=[{"path": bucket.uri_of("in", "a.png"), "size": 1, "sha256": "0" * 64}],
        chunks=[[0, 1]],
        s3=settings.s3,
    )
    plan.save()
    record_run(index_home(settings), plan, settings.s3)  # as a CLI on another machine does
    mark_queued(plan)  # `jobs submit` there: planned days ago, and on the broker since
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error
    listing = at.dataframe[0].value
    assert listing["run_id"].tolist() == [plan.run_id]
    assert (listing.loc[0, "state"], listing.loc[0, "rows"]) == ("queued", "0/1")
    assert "writes to object storage" in "\n".join(i.value for i in at.info)


def test_a_broken_index_entry_is_one_unreadable_row_and_does_not_break_the_list(tmp_path):
    data_dir = tmp_path / "data"
    ids = [_listed_run(tmp_path, data_dir).run_id for _ in range(3)]
    (data_dir / "runs" / "zz-broken.json").write_text('{"run_id": "zz-broken"}')
    entries = runs_service.runs(load_settings(env={"ANIGENRE_DATA_DIR": str(data_dir)}))
    rows = [data.run_row(e) for e in entries]
    assert [r["run_id"] for r in rows] == ["zz-broken", *reversed(ids)]  # newest first
    assert rows[0]["state"] == "unreadable" and "zz-broken" in rows[0]["note"]
    assert not data.is_live(entries[0].status)
    assert (rows[1]["state"], rows[1]["rows"], rows[1]["progress"]) == ("running", "0/1", 0.0)
    assert data.is_live(entries[1].status)  # just planned: its lease comes in a moment


def test_a_run_in_progress_shows_its_progress_and_then_completes(page, site, tmp_path):
    settings, model_id, _ = site
    folder = poster_folder(tmp_path / "in", 4, 700, "r{i}")
    data_dir = tmp_path / "data"  # the model lives elsewhere: genres come from the columns
    plan = plan_run([folder], model_id=model_id, out_dir=tmp_path / "out", chunk_size=2)
    record_run(data_dir, plan)
    predictor = stages.load_predictor(settings, model_id)
    execute_chunk(plan, 0, predictor)
    at = page(ANIGENRE_DATA_DIR=str(data_dir))
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error
    listing = at.dataframe[0].value
    assert (listing.loc[0, "state"], listing.loc[0, "rows"]) == ("running", "2/4")
    assert listing.loc[0, "progress"] == 0.5
    assert "running: 2/4 rows (2 ok, 0 error), 1/2 chunks" in _texts(at)
    assert "(updating live)" in _texts(at)
    assert len(at.dataframe[1].value) == 2  # the rows written so far
    execute_chunk(plan, 1, predictor)
    finalize(plan)
    at.run()
    assert at.dataframe[0].value.loc[0, "state"] == "complete"
    assert "complete: 4/4 rows (4 ok, 0 error), 2/2 chunks" in _texts(at)
    assert len(at.dataframe[1].value) == 4 and "(updating live)" not in _texts(at)


def test_many_runs_and_a_large_run_are_shown_a_page_at_a_time(page, tmp_path):
    vocab = Vocabulary()
    data_dir = tmp_path / "data"
    rng = np.random.default_rng(0)
    n = 3000
    inputs = [
        {"path": f"/nowhere/p{i:05d}.png", "size": 1, "sha256": f"{i:064x}"} for i in range(n)
    ]
    for r in range(25):
        plan = RunPlan(
            run_id=f"20260101T0000{r:02d}-abc", model_id="gone", out_dir=str(tmp_path / "out"),
            created="2026-01-01T00:00:00+00:00", top_k=4, chunk_size=1000,
            inputs=inputs if r == 24 else inputs[:2], chunks=[[0, 1000], [1000, 2000], [2000, 3000]]
            if r == 24 else [[0, 2]],
        )  # fmt: skip
        plan.save()
        record_run(data_dir, plan)
    for i, (start, end) in enumerate(plan.chunks):  # the newest run: 3000 rows
        items = [
            {"path": e["path"], "sha256": e["sha256"], "probs": rng.random(len(vocab))}
            for e in inputs[start:end]
        ]
        table = prediction_table(
            model_id="gone", vocab=vocab, thresholds=np.full(len(vocab), 0.5), top_k_n=4,
            items=items, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )  # fmt: skip
        write_table(plan.part_path(i), table)
    finalize(plan)
    at = page(ANIGENRE_DATA_DIR=str(data_dir))
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    listing = at.dataframe[0].value
    assert len(listing) == 20 and listing.loc[0, "run_id"] == plan.run_id  # newest first
    assert "25 run(s), newest first" in _texts(at)
    rows = at.dataframe[1].value
    assert len(rows) == 50 and rows["file"].iloc[0] == "p00000.png"
    assert "3000 of 3000 row(s) match" in _texts(at)
    pagers = {p.key: p for p in at.get("pagination")}
    assert set(pagers) >= {"runs_page", "rows_page", "gallery_page"}
    at.session_state["rows_page"] = 60  # the last page
    at.run()
    assert at.dataframe[1].value["file"].tolist() == [f"p{i:05d}.png" for i in range(2950, 3000)]
    assert not at.exception


def _listed_run(tmp_path, data_dir, created: dt.datetime | None = None) -> RunPlan:
    # A poster of its own: a file that a queued run holds is left out of later plans.
    n = len(list(tmp_path.glob("in-*")))
    folder = poster_folder(tmp_path / f"in-{n}", 1, 9100 + n)
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", now=created)
    record_run(data_dir, plan)
    return plan


def test_the_runs_list_shows_each_real_runstatus_state_with_its_note(tmp_path):
    """Each state as the service reads it from the run's files: what ``anigenre jobs
    status`` says is what the page says."""
    data_dir = tmp_path / "data"
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = _listed_run(tmp_path, data_dir)
    (killed.run_dir / "_lease.json").write_text(  # what a SIGKILLed predict leaves
        json.dumps(
            {"host": socket.gethostname(), "pid": dead.pid, "heartbeat": hour_ago.isoformat()}
        )
    )
    never_run = _listed_run(tmp_path, data_dir, created=hour_ago)
    queued = _listed_run(tmp_path, data_dir)
    mark_queued(queued)
    stalled = _listed_run(tmp_path, data_dir)
    mark_queued(stalled, now=hour_ago)
    failed = _listed_run(tmp_path, data_dir)
    mark_queued(failed)
    mark_failed(failed, [0], 3)
    settings = load_settings(env={"ANIGENRE_DATA_DIR": str(data_dir)})
    entries = {e.run_id: e for e in runs_service.runs(settings)}
    rows = {r: data.run_row(e) for r, e in entries.items()}

    gone = f"its process (pid {dead.pid} on {socket.gethostname()}) is gone"
    assert (rows[killed.run_id]["state"], rows[killed.run_id]["note"]) == ("interrupted", gone)
    assert rows[never_run.run_id]["state"] == "interrupted"
    assert rows[never_run.run_id]["note"] == "no process holds it"
    assert (rows[queued.run_id]["state"], rows[queued.run_id]["note"]) == ("queued", "")
    assert rows[stalled.run_id]["state"] == "stalled"
    assert rows[stalled.run_id]["note"].startswith("no chunk finished since")
    assert rows[failed.run_id]["state"] == "failed"
    assert "still have no part after 3 re-queues" in rows[failed.run_id]["note"]
    live = {r for r, e in entries.items() if data.is_live(e.status)}
    assert live == {queued.run_id, stalled.run_id}  # a stalled run moves once a worker comes

    s = entries[killed.run_id].status
    assert data.progress_text(s) == "interrupted: 0/1 rows (0 ok, 0 error), 0/1 chunks"
    resume = f"anigenre --data-dir {data_dir} jobs resume {killed.run_id}"
    assert data.warning_text(s, resume) == f"Interrupted: {gone}. `{resume}` finishes it."
    assert data.warning_text(entries[queued.run_id].status, resume) is None


def test_downloads_round_trip_the_filtered_rows(site):
    settings, _, run_id = site
    plan = load_plan(settings.data_dir, run_id)
    rows = data.with_labels(data.with_file(runs_service.table(settings, plan.run_id)))
    back = pd.read_parquet(__import__("io").BytesIO(data.parquet_bytes(rows)))
    assert back["path"].tolist() == rows["path"].tolist()
    assert [list(x) for x in back["top_genres"].dropna()] == [
        list(x) for x in rows["top_genres"].dropna()
    ]
    text = data.csv_bytes(rows).decode()
    assert "|" in text.splitlines()[1] or "|" in text.splitlines()[2]  # lists as A|B
    assert len(pd.read_csv(__import__("io").BytesIO(data.csv_bytes(rows)))) == len(rows)


# -- Queue -----------------------------------------------------------------------------


def test_queue_page_without_a_broker_says_how_to_configure_one(page):
    at = page()
    at.switch_page("pages/queue.py").run()
    assert not at.exception
    text = at.info[0].value
    assert "--broker redis://" in text and "ANIGENRE_BROKER_URL" in text
    assert "anigenre worker" in text


def test_queue_page_submits_a_folder_and_watches_it_finish(page, site, tmp_path):
    settings, model_id, _ = site
    folder = poster_folder(tmp_path / "queue-in", 3, 300, "q{i}")
    data_dir = tmp_path / "data"  # its own, so the run it queues is listed nowhere else
    shutil.copytree(settings.data_dir / "models", data_dir / "models")
    settings = settings.model_copy(update={"data_dir": data_dir})
    with own_redis(tmp_path / "redis") as (url, client):
        at = page(
            ANIGENRE_DATA_DIR=str(data_dir),
            ANIGENRE_BROKER_URL=url.replace("redis://", "redis://:sekrit@"),
        )
        at.switch_page("pages/queue.py").run()
        assert "sekrit" not in _texts(at) and ":***@" in _texts(at)
        at.text_input(key="q_folder").input(str(folder))
        at.button[0].click().run()
        assert not at.exception and not at.error
        (done,) = [s.value for s in at.success]
        run_id = done.split(":")[0].removeprefix("run ")
        assert "3 file(s) in 1 chunk(s) queued on 'predict'" in done
        assert client.llen("predict") == 1  # the chunk's task, as `jobs submit` sends it
        assert "queued: 0/3 rows" in _texts(at)
        # A worker's work, done here: the page follows the parts on disk.
        plan = load_plan(settings.data_dir, run_id)
        stages.predict_in_process(settings, plan)
        at.run()
        assert f"run {run_id}: complete: 3/3 rows (3 ok, 0 error)" in _texts(at)


def test_queue_page_reports_an_unreachable_broker_in_one_line(page, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    at = page(ANIGENRE_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    at.switch_page("pages/queue.py").run()
    at.text_input(key="q_folder").input(str(tmp_path))
    at.button[0].click().run()
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert message.startswith("cannot reach the broker") and "\n" not in message


# -- Models ----------------------------------------------------------------------------


def test_models_page_shows_cards_figures_and_which_is_latest(page, site):
    _, model_id, _ = site
    at = page()
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.error
    assert [e.label for e in at.expander] == [f"{model_id} · latest · served"]
    figures = at.table[0].value
    assert list(figures.index) == ["model", "prior baseline"]
    assert "macro mAP" in figures.columns
    per_genre = at.dataframe[0].value
    assert {"AP", "threshold", "support"} <= set(per_genre.columns)
    assert "custom_cnn" in _texts(at)


# -- Pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "is empty"),
        (b"hello, not an image", "is not an image"),
        (b"<html><body>404</body></html>", "is not an image"),
        (gen.encode("PNG", size=(300, 400))[:300], "truncated or corrupt"),
        (gen.png_header_only(9000, 9000), "too large"),
        (gen.encode("TIFF", size=(60, 80)), "format the model does not read"),
        (gen.encode("PNG", size=(4000, 20)), "shape no poster has"),
    ],
)
def test_each_rejected_upload_gets_one_line_saying_what_to_do(body, words):
    with pytest.raises(InvalidImage) as caught:
        decode_image(body, (40, 32), max_pixels=40_000_000)
    message = upload_message("x.bin", caught.value)
    assert message.startswith("x.bin ") and words in message
    assert message.endswith("upload a JPEG, PNG, WebP, GIF or BMP poster.")
    assert "\n" not in message


def test_the_queue_pages_folder_is_parsed_as_the_cli_parses_its_paths(tmp_path):
    assert folder_location("  s3://bkt/posters/ ") == "s3://bkt/posters"  # never s3:/bkt
    assert folder_location(str(tmp_path)) == tmp_path
    assert folder_location("~/posters") == Path.home() / "posters"
    for bad, words in (("ftp://host/x", "unsupported storage scheme"), ("s3:///x", "no bucket")):
        with pytest.raises(ConfigError, match=words):
            folder_location(bad)
    with pytest.raises(ConfigError, match="type the path"):
        folder_location("  ")
    assert output_location("  ") is None  # the data dir, as --out left out
    assert output_location(" s3://bkt/preds/ ") == "s3://bkt/preds"


def test_masked_url_hides_the_password_only():
    assert masked_url("redis://:pw@h:6390/0") == "redis://:***@h:6390/0"
    assert masked_url("redis://u:pw@h/1") == "redis://u:***@h/1"
    assert masked_url("redis://127.0.0.1:6390/0") == "redis://127.0.0.1:6390/0"


# -- The command -----------------------------------------------------------------------


def test_web_serves_on_loopback_headless_with_the_model_after_the_script_args(tmp_path):
    from anigenre.jobs.cli.web_cmd import server_env, streamlit_argv

    argv = streamlit_argv("127.0.0.1", 8123, "latest")
    flags = dict(zip(argv[5:-3:2], argv[6:-3:2], strict=True))
    assert argv[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8123"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--runner.postScriptGC"] == "false"  # bench/web.py: ~0.3 s per upload
    assert flags["--server.maxUploadSize"] == "10"  # posters are a few MB
    assert argv[-3:] == ["--", "--model", "latest"]
    from anigenre.config import load_settings

    settings = load_settings(overrides={"data_dir": "rel/data", "broker_url": "redis://h/0"})
    env = server_env(settings, "my.toml", {"PATH": "/bin"})
    assert env["ANIGENRE_DATA_DIR"] == str(Path("rel/data").resolve())
    assert env["ANIGENRE_CONFIG"].endswith("my.toml") and os.path.isabs(env["ANIGENRE_CONFIG"])
    assert env["ANIGENRE_BROKER_URL"] == "redis://h/0" and env["PATH"] == "/bin"
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(2**20)  # large blocks go back when freed


def test_web_refuses_an_unknown_model_a_bad_port_and_a_busy_port(trained, tmp_path):  # noqa: F811
    settings, _ = trained
    env = {**_clean_env(), "ANIGENRE_DATA_DIR": str(settings.data_dir)}
    done = run_cli("web", "--model", "nosuch", "--port", "8599", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "anigenre: error: no single model matches 'nosuch'; 'anigenre models list' shows them"
    )
    done = run_cli("web", "--port", "70000", env=env)
    assert done.returncode == 2 and "is not a port" in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("web", "--port", str(port), env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"anigenre: error: cannot serve on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1


# -- Rough edges (issue 18) ------------------------------------------------------------


def test_the_models_header_shows_each_models_aliases(page, site, tmp_path):
    from anigenre.models.synced import Registry

    settings, model_id, _ = site
    data_dir = tmp_path / "data"  # its own: the alias is this test's
    shutil.copytree(settings.data_dir / "models", data_dir / "models")
    Registry(settings.model_copy(update={"data_dir": data_dir})).promote(model_id, "production")
    at = page(model_id, ANIGENRE_DATA_DIR=str(data_dir))
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.error
    assert [e.label for e in at.expander] == [f"{model_id} · production · latest · served"]


def test_the_queue_page_writes_to_the_output_folder_typed(page, site, tmp_path):
    settings, _, _ = site
    folder = poster_folder(tmp_path / "queue-in", 2, 350, "o{i}")
    data_dir, out = tmp_path / "data", tmp_path / "elsewhere"
    shutil.copytree(settings.data_dir / "models", data_dir / "models")
    settings = settings.model_copy(update={"data_dir": data_dir})
    with own_redis(tmp_path / "redis") as (url, _):
        at = page(ANIGENRE_DATA_DIR=str(data_dir), ANIGENRE_BROKER_URL=url)
        at.switch_page("pages/queue.py").run()
        at.text_input(key="q_folder").input(str(folder))
        at.text_input(key="q_out").input(f" {out} ")
        at.button[0].click().run()
        assert not at.exception and not at.error
        run_id = at.success[0].value.split(":")[0].removeprefix("run ")
        plan = load_plan(settings.data_dir, run_id)
        assert Path(plan.out_dir) == out
        stages.predict_in_process(settings, plan)  # a worker's job
        at.run()
        assert f"run {run_id}: complete: 2/2 rows (2 ok, 0 error)" in _texts(at)
    parts = list((out / "predictions" / f"run_id={run_id}").glob("part-*.parquet"))
    assert len(pd.concat(pd.read_parquet(p) for p in parts)) == 2
    assert not list((data_dir / "predictions").glob("run_id=*"))  # not in the data dir


def test_an_s3_run_the_page_cannot_reach_says_in_full_what_it_needs(
    page, s3, tmp_path, monkeypatch
):
    data_dir = tmp_path / "data"
    bucket = s3.new_bucket()
    plan = RunPlan(
        run_id="20261128T120000-s3aa", model_id="m", out_dir=bucket.uri_of("preds"),
        created="2026-11-28T12:00:00+00:00", top_k=4, chunk_size=2,
        inputs=[{"path": bucket.uri_of("in", "a.png"), "size": 1, "sha256": "0" * 64}],
        chunks=[[0, 1]], s3=s3.options,
    )  # fmt: skip
    plan.save()
    mark_queued(plan)
    record_run(data_dir, plan)  # `predict --out s3://...` with the AWS variables set
    for key in [k for k in os.environ if k.startswith("AWS_") and k != "AWS_CA_BUNDLE"]:
        monkeypatch.delenv(key)  # the page is started without them
    at = page(ANIGENRE_DATA_DIR=str(data_dir))
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    listing = at.dataframe[0].value
    assert listing.loc[0, "state"] == "unreadable"
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith(f"run {plan.run_id} writes to {bucket.uri_of('preds')}, and this")
    assert "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION" in warning
    assert warning.endswith("as for the command that made the run.")
    # With the variables, the same run reads as the CLI reads it.
    at = page(ANIGENRE_DATA_DIR=str(data_dir), **s3.env)
    at.switch_page("pages/runs.py").run()
    assert at.dataframe[0].value.loc[0, "state"] == "queued" and not at.warning


def test_an_upload_over_the_limit_is_one_line_and_never_read(page):
    from anigenre.jobs.cli.web_cmd import MAX_UPLOAD_MB

    assert MAX_UPLOAD_MB == 10  # posters are a few MB
    old = st.get_option("server.maxUploadSize")
    st.config.set_option("server.maxUploadSize", MAX_UPLOAD_MB)  # as `anigenre web` sets it
    try:
        at = page()
        big = b"\0" * (11 * 2**20)  # the browser refuses it; AppTest hands it over anyway
        ok = ("ok.png", poster_png(5), "image/png")
        at.file_uploader[0].set_value([("huge.png", big, "image/png"), ok])
        at.run()
    finally:
        st.config.set_option("server.maxUploadSize", old)
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert message.startswith("huge.png is 11.0 MB, over this page's 10 MB limit")
    assert any("**ok.png**: top genres" in m.value for m in at.markdown)
